"""Getting the job's audio bytes under limits: URL download, base64, or an allowed local path.

URL safety: only http/https; every connection (the first and each redirect) resolves the host,
refuses loopback, private, link-local, multicast, reserved and unspecified addresses (IPv4 and
IPv6, IPv4-mapped included) and then connects to the very address it checked, so a DNS answer
that changes between check and connect cannot slip through. Environment proxies are ignored so
they cannot bypass the check. Redirects are followed one by one with their bodies unread. Sizes
are counted after content decoding, so a compressed body cannot inflate past the limit, and one
wall-clock deadline (a watchdog that shuts the sockets) bounds everything from connect to the
last byte, headers included; cancelling the job shuts them too. Error texts never carry a query
string, and logged URLs cannot forge log lines.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from worker.stages import timed
from worker.errors import Cancelled, DownloadError, RequestError, UnsafeURL

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
# Within the one deadline: a connect may take this long (the watchdog cannot cut a connect short),
# and a server that sends nothing for this long fails the download early (long deadlines only).
CONNECT_SECONDS = 10.0
STALL_SECONDS = 30.0
USER_AGENT = "whisper-runpod-worker/0.1"


EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    timeout: float
    # Networks exempt from the public-address rule: none in production; tests name their own server.
    allowed_networks: tuple = ()


def check_address(ip: str, allowed_networks: tuple = ()) -> None:
    """Refuse an address a stranger's URL must never reach, unless it lies in `allowed_networks`.
    IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64) are judged by
    the IPv4 address they lead to as well."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if any(address.version == net.version and address in net for net in allowed_networks):
        return
    for candidate in [address] + _embedded_ipv4(address):
        if (
            candidate.is_loopback or candidate.is_private or candidate.is_link_local or candidate.is_multicast
            or candidate.is_reserved or candidate.is_unspecified or not candidate.is_global
            or (isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local)
        ):
            raise UnsafeURL(f"refusing to connect to {address}: not a public address", field="audio")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address) -> list:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
    if address in _NAT64 or address in _V4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [item for item in found if item is not None]


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


class _Watchdog:
    """One absolute deadline from connect to last byte, and cancellation: at either, the
    download's sockets are shut, so no read (headers, body, TLS) can outlast it."""

    def __init__(self, deadline: float, cancelled: Optional[threading.Event]):
        self.deadline = deadline
        self.cancelled = cancelled or threading.Event()
        self.fired: Optional[str] = None
        self._sockets: list = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="download-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.cancelled.is_set():
                return self._fire("cancelled")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self._fire("timeout")
            self._done.wait(min(0.05, remaining))

    def _fire(self, reason: str) -> None:
        with self._lock:
            self.fired = reason
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                sock.shutdown(socket.SHUT_RDWR)

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def stop(self) -> None:
        self._done.set()


class _GuardMixin:
    allowed_networks: tuple = ()
    watchdog: Optional[_Watchdog] = None

    def _new_conn(self):  # urllib3's hook for opening the TCP socket
        family, sockaddr = resolve_checked(self._dns_host, self.port, self.allowed_networks)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if self.watchdog is not None:
                self.watchdog.add(sock)
            sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            raise _ConnectFailed(self, f"connection to {sockaddr[0]} port {sockaddr[1]} failed: {exc.strerror or type(exc).__name__}") from exc
        return sock


class _ConnectFailed(urllib3.exceptions.NewConnectionError):
    """A failed connect with the worker's own text: the client reads this, not urllib3's wrappers
    (which repeat the pool and the URL first, and can push the cause past the length cap)."""

    def __init__(self, conn, text: str):
        super().__init__(conn, text)
        self.text = text


def _guarded_adapter(allowed_networks: tuple, watchdog: Optional[_Watchdog] = None) -> HTTPAdapter:
    guard = type("Guard", (_GuardMixin,), {"allowed_networks": allowed_networks, "watchdog": watchdog})
    http_conn = type("GuardedHTTPConnection", (guard, HTTPConnection), {})
    https_conn = type("GuardedHTTPSConnection", (guard, HTTPSConnection), {})
    http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    adapter = HTTPAdapter(max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
    return adapter


def check_url(url: str) -> None:
    """The URL's form, before anything resolves or connects: scheme, host, port."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed or invalid [IPv6] literal
        raise RequestError("URL has an invalid [IPv6] host", field="audio") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are accepted, not {parts.scheme or 'a bare path'!r}", field="audio")
    host = parts.hostname
    if not host:
        raise RequestError("URL has no host", field="audio")
    try:
        parts.port
    except ValueError:
        raise RequestError("URL has an invalid port (1-65535)", field="audio") from None
    if not _is_ip(host):
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or any(not 1 <= len(label) <= 63 for label in labels):
            raise RequestError("URL host is not a valid name (labels of 1 to 63 characters, 253 in all)", field="audio")
        try:
            host.encode("idna")
        except UnicodeError:
            raise RequestError("URL host is not a valid name", field="audio") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def redact(url: str) -> str:
    """The URL without query string, fragment or credentials, and with every character that could
    forge a log line (spaces, controls, line separators, escapes) percent-encoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    host = quote(parts.hostname or "", safe=".-:")
    if ":" in host:  # an IPv6 literal keeps its brackets, or its last group reads as the port
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{quote(parts.path, safe=_PATH_SAFE)}"


_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_SECRETS = re.compile(r"\?[^\s'\"<>)]*")


def _scrub(text: str) -> str:
    """An exception's text without query strings (signed-URL secrets) and at most 200 characters."""
    text = _SECRETS.sub("", text)
    return text if len(text) <= 200 else text[:200] + "..."


@timed("fetch")
def download(url: str, dest_path: str, limits: FetchLimits, cancelled: Optional[threading.Event] = None) -> int:
    """Stream `url` into `dest_path`; return the byte count. Raises DownloadError/UnsafeURL, or
    Cancelled. Redirects are followed here, one by one, under the same deadline, with their
    bodies never read."""
    check_url(url)
    watchdog = _Watchdog(time.monotonic() + limits.timeout, cancelled)
    session = _Session()
    session.trust_env = False  # no proxies or netrc from the environment
    adapter = _guarded_adapter(limits.allowed_networks, watchdog)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    current = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            # a read the deadline would end anyway gets no timeout of its own (no race with the watchdog)
            stall = STALL_SECONDS if STALL_SECONDS < watchdog.remaining() else None
            timeout = min(CONNECT_SECONDS, watchdog.remaining()), stall
            with session.get(current, stream=True, allow_redirects=False, timeout=timeout, headers=headers) as response:
                if response.is_redirect:
                    current = _next_url(current, response.headers.get("Location", ""))
                    continue  # leaving the block closes the connection, unread
                if response.status_code != 200:
                    raise DownloadError(f"server answered HTTP {response.status_code} for {redact(current)}", field="audio")
                declared = _content_length(response)
                if declared is not None and declared > limits.max_bytes:
                    raise DownloadError(f"file is {declared} bytes, over the {limits.max_bytes}-byte limit", field="audio")
                return _save_body(response, dest_path, limits.max_bytes, watchdog)
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects", field="audio")
    except (UnsafeURL, DownloadError, RequestError):
        if watchdog.fired == "cancelled":
            raise Cancelled("job cancelled during the download") from None
        raise  # ours, including those the guard raises inside urllib3 (which passes them through)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ValueError, UnicodeError) as exc:
        raise _download_error(exc, watchdog, limits) from None
    except OSError:  # the disk (temp file), not the network: the handler reports it as storage
        if watchdog.fired:
            raise _download_error(TimeoutError(), watchdog, limits) from None
        raise
    finally:
        watchdog.stop()
        session.close()


class _Session(requests.Session):
    def get_redirect_target(self, resp):
        # requests reads a redirect's whole body, outside any limit, even with allow_redirects
        # off (resolve_redirects consumes it); download() follows redirects itself instead
        return None


def _next_url(current: str, location: str) -> str:
    if not location:
        raise DownloadError("redirect without a Location", field="audio")
    target = urljoin(current, location.strip())
    if urlsplit(target).scheme not in ("http", "https"):
        raise UnsafeURL("redirected to a non-http(s) URL", field="audio")
    check_url(target)
    return target


def _content_length(response: requests.Response) -> Optional[int]:
    declared = response.headers.get("Content-Length")
    if declared is None:
        return None
    declared = declared.strip()
    if not (declared.isascii() and declared.isdigit()):
        raise DownloadError("server sent an invalid Content-Length", field="audio")
    return int(declared)


def _download_error(exc: Exception, watchdog: _Watchdog, limits: FetchLimits) -> BaseException:
    if watchdog.fired == "cancelled":
        return Cancelled("job cancelled during the download")
    if watchdog.fired == "timeout":
        return DownloadError(f"download timed out after {limits.timeout:g} s", field="audio")
    if isinstance(exc, requests.exceptions.Timeout):  # waiting for the headers, before the deadline
        return DownloadError("download timed out (no data)", field="audio")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, _ConnectFailed):
            return DownloadError(reason.text, field="audio")
        return DownloadError(f"connection failed: {_scrub(str(reason or exc))}", field="audio")
    return DownloadError(f"download failed: {type(exc).__name__}: {_scrub(str(exc))}", field="audio")


def _save_body(response: requests.Response, dest_path: str, max_bytes: int, watchdog: _Watchdog) -> int:
    size = 0
    with open(dest_path, "wb") as out:
        while True:
            if watchdog.fired:
                raise DownloadError("download timed out (server too slow)", field="audio")
            try:
                # read1 returns what has arrived; the watchdog ends a read that would pass the deadline.
                chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            except urllib3.exceptions.ProtocolError as exc:
                if watchdog.fired:
                    raise DownloadError("download timed out (server too slow)", field="audio") from None
                raise DownloadError(f"connection dropped after {size} bytes: {_scrub(str(exc))}", field="audio") from None
            except urllib3.exceptions.ReadTimeoutError:
                raise DownloadError("download timed out (no data)", field="audio") from None
            except urllib3.exceptions.DecodeError as exc:
                raise DownloadError(f"cannot decode the response body: {_scrub(str(exc))}", field="audio") from None
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"file is over the {max_bytes}-byte limit", field="audio")
            out.write(chunk)
    if watchdog.fired:
        raise DownloadError("download timed out (server too slow)", field="audio")
    declared = _content_length(response)
    if declared is not None and response.headers.get("Content-Encoding", "identity") == "identity" and declared != size:
        raise DownloadError(f"connection dropped: got {size} of {declared} bytes", field="audio")
    return size


def decode_base64(text: str, max_bytes: int) -> bytes:
    """The bytes of a base64 payload (or data URL) of at most `max_bytes`, exactly."""
    start = text.index(",") + 1 if text.startswith("data:") and "," in text[:200] else 0  # data:audio/wav;base64,....
    # 4 characters per 3 bytes: a longer text cannot be within the limit (refused before decoding)
    if len(text) - start > 4 * -(-max_bytes // 3):
        raise RequestError(f"payload is over the {max_bytes}-byte limit", field="audio_base64")
    try:
        data = base64.b64decode(text[start:], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("is not valid base64", field="audio_base64") from None
    if not data:
        raise RequestError("decodes to zero bytes", field="audio_base64")
    if len(data) > max_bytes:  # the last group's padding decides the final 1-2 bytes
        raise RequestError(f"payload is over the {max_bytes}-byte limit", field="audio_base64")
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
