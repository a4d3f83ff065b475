"""Getting the job's audio bytes under limits: URL download, base64, or an allowed local path.

URL safety: only http/https; every connection (the first and each redirect) resolves the host,
refuses loopback, private, link-local, multicast, reserved and unspecified addresses (IPv4 and
IPv6, IPv4-mapped included) and then connects to the very address it checked, so a DNS answer
that changes between check and connect cannot slip through. Environment proxies are ignored so
they cannot bypass the check. Sizes are counted after content decoding, so a compressed body
cannot inflate past the limit, and a wall-clock deadline bounds slow senders.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import DownloadError, RequestError, UnsafeURL

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "whisper-runpod-worker/0.1"


EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    timeout: float
    # Networks exempt from the public-address rule: none in production; tests name their own server.
    allowed_networks: tuple = ()


def check_address(ip: str, allowed_networks: tuple = ()) -> None:
    """Refuse an address a stranger's URL must never reach, unless it lies in `allowed_networks`."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allowed_networks):
        return
    if (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified or not address.is_global
    ):
        raise UnsafeURL(f"refusing to connect to {address}: not a public address", field="audio")


def resolve_checked(host: str, port: int, allowed_networks: tuple) -> tuple:
    """Resolve once and return the first permitted (family, sockaddr); refuse if any answer is unsafe."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DownloadError(f"cannot resolve host {host!r}: {exc.strerror}", field="audio") from None
    for _family, _type, _proto, _name, sockaddr in infos:
        check_address(sockaddr[0], allowed_networks)
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


class _GuardMixin:
    allowed_networks: tuple = ()

    def _new_conn(self):  # urllib3's hook for opening the TCP socket
        family, sockaddr = resolve_checked(self._dns_host, self.port, self.allowed_networks)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(self, f"connection to {sockaddr[0]} failed: {exc}") from exc
        return sock


def _guarded_adapter(allowed_networks: tuple) -> HTTPAdapter:
    guard = type("Guard", (_GuardMixin,), {"allowed_networks": allowed_networks})
    http_conn = type("GuardedHTTPConnection", (guard, HTTPConnection), {})
    https_conn = type("GuardedHTTPSConnection", (guard, HTTPSConnection), {})
    http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    adapter = HTTPAdapter(max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
    return adapter


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are accepted, not {parts.scheme or 'a bare path'!r}", field="audio")
    if not parts.hostname:
        raise RequestError("URL has no host", field="audio")


def redact(url: str) -> str:
    """The URL without query string, fragment or credentials: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def download(url: str, dest_path: str, limits: FetchLimits) -> int:
    """Stream `url` into `dest_path`; return the byte count. Raises DownloadError/UnsafeURL."""
    check_url(url)
    deadline = time.monotonic() + limits.timeout
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc from the environment
    session.max_redirects = MAX_REDIRECTS
    adapter = _guarded_adapter(limits.allowed_networks)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    try:
        with session.get(url, stream=True, timeout=(min(10.0, limits.timeout), min(30.0, limits.timeout)), headers=headers) as response:
            check_url(response.url)
            if response.status_code != 200:
                raise DownloadError(f"server answered HTTP {response.status_code} for {redact(response.url)}", field="audio")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise DownloadError(f"file is {int(declared)} bytes, over the {limits.max_bytes}-byte limit", field="audio")
            return _save_body(response, dest_path, limits.max_bytes, deadline)
    except (UnsafeURL, DownloadError, RequestError):
        raise  # ours, including those the guard raises inside urllib3 (which passes them through)
    except requests.exceptions.TooManyRedirects:
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects", field="audio") from None
    except requests.exceptions.InvalidSchema:
        raise UnsafeURL("redirected to a non-http(s) URL", field="audio") from None
    except requests.exceptions.Timeout:
        raise DownloadError(f"download timed out after {limits.timeout:g} s", field="audio") from None
    except requests.exceptions.ConnectionError as exc:
        raise DownloadError(f"connection failed: {_short(exc)}", field="audio") from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(f"download failed: {_short(exc)}", field="audio") from None
    finally:
        session.close()


def _save_body(response: requests.Response, dest_path: str, max_bytes: int, deadline: float) -> int:
    size = 0
    with open(dest_path, "wb") as out:
        while True:
            if time.monotonic() > deadline:
                raise DownloadError("download timed out (server too slow)", field="audio")
            try:
                # read1 returns what has arrived, so a trickling server cannot hold one read past the deadline.
                chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            except urllib3.exceptions.ProtocolError as exc:
                raise DownloadError(f"connection dropped after {size} bytes: {_short(exc)}", field="audio") from None
            except urllib3.exceptions.ReadTimeoutError:
                raise DownloadError("download timed out (no data)", field="audio") from None
            except urllib3.exceptions.DecodeError as exc:
                raise DownloadError(f"cannot decode the response body: {_short(exc)}", field="audio") from None
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"file is over the {max_bytes}-byte limit", field="audio")
            out.write(chunk)
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and response.headers.get("Content-Encoding", "identity") == "identity" and int(declared) != size:
        raise DownloadError(f"connection dropped: got {size} of {declared} bytes", field="audio")
    return size


def decode_base64(text: str, max_bytes: int) -> bytes:
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise RequestError(f"payload is over the {max_bytes}-byte limit", field="audio_base64")
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]  # data URLs: data:audio/wav;base64,....
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("is not valid base64", field="audio_base64") from None
    if not data:
        raise RequestError("decodes to zero bytes", field="audio_base64")
    return data


def check_local_path(path: str, allowed: bool, max_bytes: int) -> str:
    if not allowed:
        raise RequestError("local file paths are disabled on this endpoint; send an http(s) URL or audio_base64", field="audio")
    if not os.path.isfile(path):
        raise RequestError(f"no such file: {path}", field="audio")
    if os.path.getsize(path) > max_bytes:
        raise RequestError(f"file is over the {max_bytes}-byte limit", field="audio")
    return path


def is_url(text: str) -> bool:
    return "://" in text[:16]


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
