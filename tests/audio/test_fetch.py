"""Fetching audio: URL guard, limits and failures, against a server on loopback only.

Every test here runs with the socket layer patched so that a connection to any address outside
127.0.0.0/8 and ::1 raises: even a broken guard cannot reach another machine.
"""

import ipaddress
import socket
import time

import pytest

from helpers import LocalServer, wait_until
from worker.audio import fetch
from worker.errors import DownloadError, RequestError, UnsafeURL

LOOPBACK_SERVER = (ipaddress.ip_network("127.0.0.1/32"),)
attempted = []


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        attempted.append(address[0])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(f"test sandbox: no connection to {address[0]}")
        return real_connect(sock, address)

    attempted.clear()
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("create_connection bypasses the guard"))


@pytest.fixture(scope="module")
def server():
    with LocalServer() as srv:
        yield srv


def limits(max_bytes=50 * 1024 * 1024, timeout=10.0, allowed=LOOPBACK_SERVER):
    return fetch.FetchLimits(max_bytes=max_bytes, timeout=timeout, allowed_networks=allowed)


def fake_dns(monkeypatch, answers):
    """Resolve test host names to the given addresses (a list per call for changing answers)."""
    real = socket.getaddrinfo
    calls = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            calls.append(host)
            ips = answers[host]
            ip = ips.pop(0) if isinstance(ips, list) else ips
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (ip, port) if family == socket.AF_INET else (ip, port, 0, 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_download_saves_the_file(server, tmp_path, data_dir):
    dest = tmp_path / "audio"
    size = fetch.download(server.url("/data/jfk.flac?token=secret"), str(dest), limits())
    assert size == (data_dir / "jfk.flac").stat().st_size
    assert dest.read_bytes() == (data_dir / "jfk.flac").read_bytes()


def test_production_guard_refuses_loopback_itself(server, tmp_path):
    with pytest.raises(UnsafeURL, match="127.0.0.1"):
        fetch.download(server.url("/data/jfk.flac"), str(tmp_path / "a"), limits(allowed=()))
    assert attempted == []


@pytest.mark.parametrize("address", [
    "127.0.0.2", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "224.0.0.1",
])
def test_private_addresses_are_refused(address):
    with pytest.raises(UnsafeURL):
        fetch.check_address(address, ())


def test_public_address_passes_the_check():
    fetch.check_address("93.184.216.34", ())
    fetch.check_address("2606:2800:220:1:248:1893:25c8:1946", ())


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/x", "http://[::1]:8080/x",
    "http://[fd00::5]/x", "http://metadata.test/computeMetadata/v1/", "file:///etc/passwd", "ftp://example.com/a",
])
def test_redirects_into_private_space_are_refused(server, tmp_path, monkeypatch, target):
    fake_dns(monkeypatch, {"metadata.test": "169.254.169.254"})
    server.httpd.redirect_target = target
    with pytest.raises(UnsafeURL):
        fetch.download(server.url("/redirect"), str(tmp_path / "a"), limits())
    assert all(ipaddress.ip_address(a).is_loopback and a == "127.0.0.1" for a in attempted)


def test_host_names_resolving_to_private_addresses_are_refused(tmp_path, monkeypatch):
    fake_dns(monkeypatch, {"intranet.test": "192.168.0.10", "six.test": "fd12::1"})
    for url in ("http://intranet.test/a.wav", "https://six.test/a.wav"):
        with pytest.raises(UnsafeURL):
            fetch.download(url, str(tmp_path / "a"), limits(allowed=()))
    assert attempted == []


def test_dns_answer_changing_between_check_and_connect_cannot_redirect_the_connection(tmp_path, monkeypatch):
    # First answer public (passes), any later answer loopback: we must connect to the checked address.
    calls = fake_dns(monkeypatch, {"rebind.test": ["93.184.216.34", "127.0.0.1", "127.0.0.1"]})
    with pytest.raises(DownloadError) as info:
        fetch.download("http://rebind.test/a.wav", str(tmp_path / "a"), limits(allowed=()))
    assert str(info.value) == "audio: connection to 93.184.216.34 port 80 failed: ConnectionRefusedError"
    assert calls == ["rebind.test"]  # resolved once
    assert attempted == ["93.184.216.34"]  # and connected to exactly what was checked (the sandbox refused it)


def test_404_names_the_status_without_the_query(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch.download(server.url("/data/missing.wav?sig=abc"), str(tmp_path / "a"), limits())
    assert "sig=abc" not in str(info.value)


def test_trickling_server_hits_the_deadline(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        fetch.download(server.url("/slow"), str(tmp_path / "a"), limits(timeout=2.0))
    assert time.monotonic() - started < 6


def test_declared_size_over_the_limit_is_refused_before_reading(server, tmp_path):
    with pytest.raises(DownloadError, match="over the 1000-byte limit"):
        fetch.download(server.url("/huge-declared"), str(tmp_path / "a"), limits(max_bytes=1000))


def test_body_without_length_stops_at_the_limit(server, tmp_path):
    dest = tmp_path / "a"
    with pytest.raises(DownloadError, match="over the 1048576-byte limit"):
        fetch.download(server.url("/endless"), str(dest), limits(max_bytes=1024 * 1024))
    assert dest.stat().st_size <= 1024 * 1024


def test_compressed_body_counts_inflated_bytes(server, tmp_path):
    dest = tmp_path / "a"
    with pytest.raises(DownloadError, match="over the"):
        fetch.download(server.url("/gzip-bomb"), str(dest), limits(max_bytes=1024 * 1024))
    assert dest.stat().st_size <= 1024 * 1024


def test_content_length_that_lies_is_a_dropped_download(server, tmp_path):
    with pytest.raises(DownloadError, match="dropped"):
        fetch.download(server.url("/lying-length"), str(tmp_path / "a"), limits())


@pytest.mark.parametrize("url", ["gopher://example.com/a", "file:///etc/passwd", "data:audio/wav;base64,AAAA"])
def test_non_http_schemes_are_refused(url, tmp_path):
    with pytest.raises(UnsafeURL, match="only http and https"):
        fetch.download(url, str(tmp_path / "a"), limits())


def test_base64_limits_and_errors():
    assert fetch.decode_base64("aGVsbG8=", 100) == b"hello"
    assert fetch.decode_base64("data:audio/wav;base64,aGVsbG8=", 100) == b"hello"
    with pytest.raises(RequestError, match="not valid base64"):
        fetch.decode_base64("not base64!!", 100)
    with pytest.raises(RequestError, match="over the 3-byte limit"):
        fetch.decode_base64("aGVsbG8gd29ybGQ=", 3)


def test_local_paths_need_the_setting(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"x")
    with pytest.raises(RequestError, match="disabled"):
        fetch.check_local_path(str(path), allowed=False, max_bytes=10)
    assert fetch.check_local_path(str(path), allowed=True, max_bytes=10) == str(path)
    with pytest.raises(RequestError, match="no such file"):
        fetch.check_local_path(str(tmp_path / "none.wav"), allowed=True, max_bytes=10)


def test_redact_drops_credentials_and_query():
    assert fetch.redact("https://user:pw@host.test:8443/a/b.wav?X-Amz-Signature=1#f") == "https://host.test:8443/a/b.wav"


# -- second round: redirects, deadlines, cancellation, URL forms, leaks ------------------------

def test_a_redirect_body_is_never_read(server, tmp_path):
    server.httpd.redirect_body_sent = None
    started = time.monotonic()
    size = fetch.download(server.url("/redirect-with-body"), str(tmp_path / "a"), limits(max_bytes=2 * 1024 * 1024))
    assert size > 0 and time.monotonic() - started < 0.8
    assert wait_until(lambda: server.httpd.redirect_body_sent is not None)  # the server gave up sending it
    assert server.httpd.redirect_body_sent < 4 * 1024 * 1024


def test_one_deadline_covers_the_headers(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        fetch.download(server.url("/trickle-headers"), str(tmp_path / "a"), limits(timeout=1.0))
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("url, match", [
    ("http://example.com:70000/a.wav", "port"),
    ("http://example.com:0x50/a.wav", "port"),
    ("http://" + "a" * 64 + ".com/a.wav", "valid name"),
    ("http://a..b.com/a.wav", "valid name"),
    ("http://" + "a." * 130 + "com/a.wav", "valid name"),
])
def test_malformed_urls_are_clear_errors_before_any_lookup(url, match, tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("resolved a malformed URL"))
    with pytest.raises(RequestError, match=match):
        fetch.download(url, str(tmp_path / "a"), limits())


def test_a_non_ascii_content_length_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="Content-Length"):
        fetch.download(server.url("/odd-length"), str(tmp_path / "a"), limits())


def test_error_messages_never_carry_the_query_string(tmp_path):
    with socket.socket() as bound:  # bound, never listening: refused, and the port cannot be taken meanwhile
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        with pytest.raises(DownloadError) as info:
            fetch.download(f"http://127.0.0.1:{port}/a.wav?X-Amz-Signature=SECRET123&token=SECRET456", str(tmp_path / "a"), limits())
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value.to_response())


def test_logged_urls_cannot_forge_log_lines():
    logged = fetch.redact("http://example.com/a b\u2028job=forged outcome=ok\r\n\x1b[31mred?sig=SECRET")
    assert logged.isprintable() and " " not in logged and "\x1b" not in logged and "SECRET" not in logged
    assert logged.startswith("http://example.com/a%20b")


@pytest.mark.parametrize("address", [
    "fec0::1",                                   # site-local
    "2002:c0a8:0101::1",                         # 6to4 of 192.168.1.1
    "2002:7f00:0001::1",                         # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",      # Teredo, client 10.0.0.1 (obfuscated)
    "64:ff9b::a00:1",                            # NAT64 of 10.0.0.1
    "::127.0.0.1",                               # IPv4-compatible loopback
    "::ffff:169.254.169.254",                    # mapped metadata address
])
def test_ipv6_forms_that_lead_to_private_ipv4_are_refused(address):
    with pytest.raises(UnsafeURL):
        fetch.check_address(address)


def test_public_ipv6_is_allowed():
    fetch.check_address("2606:4700:4700::1111")
    fetch.check_address("2002:0808:0808::1")  # 6to4 of 8.8.8.8


# -- the full text and field of each refusal (what the client reads), and the limits' edges ----

@pytest.mark.parametrize("path, limit, error", [
    ("/data/missing.wav?sig=1", {}, "audio: server answered HTTP 404 for http://127.0.0.1:{port}/data/missing.wav"),
    ("/huge-declared", {"max_bytes": 1000}, "audio: file is 1000000000000 bytes, over the 1000-byte limit"),
    ("/endless", {"max_bytes": 100_000}, "audio: file is over the 100000-byte limit"),
    ("/slow", {"timeout": 1.0}, "audio: download timed out (server too slow)"),
    ("/odd-length", {}, "audio: server sent an invalid Content-Length"),
])
def test_download_refusals_say_why(server, tmp_path, path, limit, error):
    with pytest.raises(DownloadError) as info:
        fetch.download(server.url(path), str(tmp_path / "a"), limits(**limit))
    assert (str(info.value), info.value.field) == (error.format(port=server.port), "audio")


@pytest.mark.parametrize("target, kind, error", [
    ("", DownloadError, "audio: redirect without a Location"),
    ("ftp://example.com/a.wav", UnsafeURL, "audio: redirected to a non-http(s) URL"),
    ("gopher://example.com/a.wav", UnsafeURL, "audio: redirected to a non-http(s) URL"),
    ("/redirect", DownloadError, "audio: more than 5 redirects"),
])
def test_redirect_refusals_say_why(server, tmp_path, target, kind, error):
    server.httpd.redirect_target = target
    with pytest.raises(kind) as info:
        fetch.download(server.url("/redirect"), str(tmp_path / "a"), limits())
    assert (str(info.value), info.value.field) == (error, "audio")


def test_a_refused_connection_names_the_address_and_the_cause_whatever_the_url(tmp_path):
    with socket.socket() as bound:  # bound, never listening: connecting is refused, and no one else can take the port
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        url = f"http://127.0.0.1:{port}/{'a' * 400}.wav?sig=SECRET"  # urllib3's wrappers would push the cause past the cut
        with pytest.raises(DownloadError) as info:
            fetch.download(url, str(tmp_path / "a"), limits())
    assert (str(info.value), info.value.field) == (f"audio: connection to 127.0.0.1 port {port} failed: Connection refused", "audio")


def test_redact_keeps_a_percent_encoded_path_and_drops_a_bad_port():
    assert fetch.redact("http://example.com/a%20b/c@d;e,f.wav?sig=x") == "http://example.com/a%20b/c@d;e,f.wav"
    assert fetch.redact("http://example.com:99999/a.wav?sig=x") == "http://example.com/a.wav"


def test_redact_keeps_the_brackets_of_an_ipv6_host_and_never_raises():
    assert fetch.redact("http://[2001:db8::1]:8080/a.wav?sig=x") == "http://[2001:db8::1]:8080/a.wav"
    assert fetch.redact("https://[::1]/a.wav") == "https://[::1]/a.wav"  # not "https://::1/...", whose "1" reads as a port
    assert fetch.redact("http://[::1/a.wav?sig=SECRET") == "(an invalid URL)"  # the log line of a job whose URL is refused
    assert fetch.redact("http:///a.wav") == "http:///a.wav"  # no host: nothing made up


def test_base64_payload_limits_are_exact():
    import base64

    exactly = base64.b64encode(b"\x01" * 300).decode()  # 400 characters, 300 bytes: at the limit
    assert fetch.decode_base64(exactly, 300) == b"\x01" * 300
    assert fetch.decode_base64("data:audio/wav;base64," + exactly, 300) == b"\x01" * 300  # the data URL's prefix is no payload
    for limit in (298, 299):  # 300 bytes in 400 characters, as 298 and 299 bytes would be: refused by the decoded size
        assert fetch.decode_base64(base64.b64encode(b"\x01" * limit).decode(), limit) == b"\x01" * limit
        with pytest.raises(RequestError) as info:
            fetch.decode_base64(exactly, limit)
        assert (str(info.value), info.value.field) == (f"audio_base64: payload is over the {limit}-byte limit", "audio_base64")


def test_base64_too_long_to_be_within_the_limit_is_refused_before_decoding(monkeypatch):
    import base64

    decoded = []
    real = base64.b64decode
    monkeypatch.setattr(fetch.base64, "b64decode", lambda text, **kw: decoded.append(len(text)) or real(text, **kw))
    for text in ("A" * 404, "data:audio/wav;base64," + "A" * 404):  # 404 characters: at least 301 bytes
        with pytest.raises(RequestError) as info:
            fetch.decode_base64(text, 300)
        assert str(info.value) == "audio_base64: payload is over the 300-byte limit"
    assert decoded == []
    assert len(fetch.decode_base64("A" * 400, 300)) == 300 and decoded == [400]


@pytest.mark.parametrize("text, error", [
    ("", "audio_base64: decodes to zero bytes"),
    ("AA!AA", "audio_base64: is not valid base64"),
    ("aGVs,bG8=", "audio_base64: is not valid base64"),  # a comma is not base64 outside a data URL
    ("data:audio/wav;base64,aGVs,bG8=", "audio_base64: is not valid base64"),  # nor inside one
])
def test_base64_refusals_say_why(text, error):
    with pytest.raises(RequestError) as info:
        fetch.decode_base64(text, 300)
    assert (str(info.value), info.value.field) == (error, "audio_base64")


def test_local_path_refusals_say_why(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"x" * 11)
    for args, error in [((str(path), False, 100), "audio: local file paths are disabled on this endpoint; send an http(s) URL or audio_base64"),
                        ((str(tmp_path / "none.wav"), True, 100), f"audio: no such file: {tmp_path / 'none.wav'}"),
                        ((str(path), True, 10), "audio: file is over the 10-byte limit")]:
        with pytest.raises(RequestError) as info:
            fetch.check_local_path(*args)
        assert (str(info.value), info.value.field) == (error, "audio")
    assert fetch.check_local_path(str(path), True, 11) == str(path)


def test_an_unknown_host_is_named(tmp_path, monkeypatch):
    def no_such_host(host, port, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(DownloadError) as info:
        fetch.download("http://nowhere.test/a.wav", str(tmp_path / "a"), limits(allowed=()))
    assert (str(info.value), info.value.field) == ("audio: cannot resolve host 'nowhere.test': Name or service not known", "audio")


def test_a_server_that_never_answers_times_out_at_the_deadline(tmp_path):
    with socket.socket() as silent:  # listening, never accepting: connected, and then nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(DownloadError) as info:
            fetch.download(f"http://127.0.0.1:{silent.getsockname()[1]}/a.wav", str(tmp_path / "a"), limits(timeout=1.0))
    assert (str(info.value), info.value.field) == ("audio: download timed out after 1 s", "audio")
    assert time.monotonic() - started < 3


def test_a_job_cancelled_before_its_download_starts_is_cancelled_at_once(server, tmp_path):
    import threading

    from worker.errors import Cancelled

    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled) as info:
        fetch.download(server.url("/data/jfk.flac"), str(tmp_path / "a"), limits(), cancelled)
    assert str(info.value) == "job cancelled during the download"
    assert not (tmp_path / "a").exists() or (tmp_path / "a").stat().st_size == 0


def test_a_redirect_to_https_is_followed(server, tmp_path):
    """https is as welcome as http: the redirect is followed (here the TLS handshake with a plain
    HTTP server then fails, which is a download error, not a refused URL)."""
    server.httpd.redirect_target = server.url("/data/jfk.flac").replace("http://", "https://")
    with pytest.raises(DownloadError) as info:
        fetch.download(server.url("/redirect"), str(tmp_path / "a"), limits())
    assert type(info.value) is DownloadError and str(info.value).startswith("audio: connection failed: [SSL: ")


def test_a_compressed_body_within_the_limit_is_saved_inflated(server, tmp_path):
    """Content-Length counts the compressed bytes: the inflated size differing from it is no drop."""
    dest = tmp_path / "a"
    assert fetch.download(server.url("/gzip-bomb"), str(dest), limits(max_bytes=64 * 1024 * 1024)) == 50 * 1024 * 1024
    assert dest.stat().st_size == 50 * 1024 * 1024


def test_a_file_of_exactly_the_limit_is_accepted(server, tmp_path, data_dir):
    size = (data_dir / "jfk.flac").stat().st_size
    assert fetch.download(server.url("/data/jfk.flac"), str(tmp_path / "a"), limits(max_bytes=size)) == size


def test_a_private_address_is_refused_naming_it():
    with pytest.raises(UnsafeURL) as info:
        fetch.check_address("10.0.0.1")
    assert (str(info.value), info.value.field) == ("audio: refusing to connect to 10.0.0.1: not a public address", "audio")


def test_is_url_tells_urls_from_paths():
    assert fetch.is_url("https://example.com/a.wav") and fetch.is_url("http://example.com/a.wav")
    assert not fetch.is_url("/data/a.wav") and not fetch.is_url("a.wav") and not fetch.is_url("/very/long/directory/x://y")


@pytest.mark.parametrize("url, error", [
    ("a.wav", "audio: only http and https URLs are accepted, not 'a bare path'"),
    ("ftp://example.com/a.wav", "audio: only http and https URLs are accepted, not 'ftp'"),
    ("http:///a.wav", "audio: URL has no host"),
    ("http://example.com:0x50/a.wav", "audio: URL has an invalid port (1-65535)"),
    ("http://" + "a" * 64 + ".com/a.wav", "audio: URL host is not a valid name (labels of 1 to 63 characters, 253 in all)"),
    ("http://.example.com/a.wav", "audio: URL host is not a valid name (labels of 1 to 63 characters, 253 in all)"),
    ("http://" + ".".join(["a" * 63] * 3 + ["a" * 62]) + "/a.wav", "audio: URL host is not a valid name (labels of 1 to 63 characters, 253 in all)"),
    ("http://xn--\u00e4.com/a.wav", "audio: URL host is not a valid name"),
    ("http://[::1/a.wav", "audio: URL has an invalid [IPv6] host"),
    ("http://[example.com]/a.wav", "audio: URL has an invalid [IPv6] host"),
])
def test_url_form_refusals_say_why(url, error):
    with pytest.raises((RequestError, UnsafeURL)) as info:
        fetch.check_url(url)
    assert (str(info.value), info.value.field) == (error, "audio")


@pytest.mark.parametrize("host", ["a" * 63 + ".com", "a.b.co", "example.com.", ".".join(["a" * 63] * 3 + ["a" * 61]), "ex\u00e4mple.com"])
def test_url_forms_at_the_edges_are_accepted(host):
    fetch.check_url(f"http://{host}/a.wav")  # 63-character labels, 1-character labels, a trailing dot, 253 in all, IDNA


def test_a_dropped_connection_says_how_much_arrived(server, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch.download(server.url("/lying-length"), str(tmp_path / "a"), limits())
    assert str(info.value).startswith("audio: connection dropped after 1000 bytes: ") and info.value.field == "audio"
    assert "IncompleteRead(1000 bytes read, 9000 more expected)" in str(info.value)


def test_the_request_names_the_worker_asks_for_no_compression_and_ignores_proxy_settings(tmp_path, monkeypatch):
    import http.server
    import threading

    seen = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server's naming
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"RIFF")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)  # bound before the URL is made
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that does not exist: used, the download fails
    monkeypatch.setenv("NO_PROXY", "")
    try:
        assert fetch.download(f"http://127.0.0.1:{httpd.server_address[1]}/a.wav", str(tmp_path / "a"), limits()) == 4
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen[0]["User-Agent"] == fetch.USER_AGENT and seen[0]["Accept-Encoding"] == "identity"


# -- each way a download ends, reached for real: redirect hops, corrupt bodies, stalls, the deadline
# meeting a slow disk. The routes hold a connection open by waiting for the client to close it
# (a recv that returns when the worker shuts the socket): no sleeps.

class Scripted:
    """A loopback server whose routes a test scripts; `hung_up` is set when the worker closes a
    connection the route holds open."""

    def __init__(self):
        import http.server
        import threading

        scripted = self
        self.answering = threading.Event()
        self.hung_up = threading.Event()
        self.flood_bytes = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                route, _, arg = self.path.strip("/").partition("/")
                if route == "hops":  # /hops/N redirects N times, then answers
                    if int(arg) > 0:
                        return self.answer(302, b"", {"Location": f"/hops/{int(arg) - 1}"})
                    return self.answer(200, b"RIFF")
                if route == "bad-gzip":  # compressed, says the server (unasked); it is not
                    return self.answer(200, b"not gzip at all", {"Content-Encoding": "gzip"})
                if route == "stall":  # a few bytes of 1000, then silence
                    return self.hold(b"x" * 10, {"Content-Length": "1000"})
                if route == "unsized":  # a body without a length (ends when the connection does): a byte, then silence
                    return self.hold(b"x", {"Connection": "close"})
                if route == "flood":  # more than a pipe holds at once, of a declared 10 MB
                    return self.hold(b"\0" * scripted.flood_bytes, {"Content-Length": str(10 * 1024 * 1024)})
                if route == "chunked-and-sized":  # a chunked body of 4 bytes that also declares 100
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"4\r\nRIFF\r\n0\r\n\r\n")
                    return
                if route == "hang-up":  # closes the connection without a word
                    self.close_connection = True
                    return
                if route == "half-headers":  # the status line and one header, then silence
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n")
                    return self.wait_for_close()
                return self.answer(404, b"")

            def answer(self, status, body, headers=()):
                self.send_response(status)
                for name, value in dict(headers, **{"Content-Length": str(len(body))}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def hold(self, body, headers):
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                self.wait_for_close()

            def wait_for_close(self):
                self.wfile.flush()
                scripted.answering.set()
                try:
                    self.connection.recv(1)  # the worker sends nothing more: this returns when it closes
                except OSError:
                    pass
                scripted.hung_up.set()
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound before any URL is made
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def scripted():
    srv = Scripted()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_exactly_the_maximum_of_redirects_is_followed_and_one_more_is_refused(scripted, tmp_path):
    assert fetch.download(scripted.url("/hops/5"), str(tmp_path / "a"), limits()) == 4
    assert (tmp_path / "a").read_bytes() == b"RIFF"
    with pytest.raises(DownloadError) as info:
        fetch.download(scripted.url("/hops/6"), str(tmp_path / "b"), limits())
    assert (str(info.value), info.value.field) == ("audio: more than 5 redirects", "audio")


def test_a_corrupt_compressed_body_says_it_cannot_be_decoded(scripted, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch.download(scripted.url("/bad-gzip"), str(tmp_path / "a"), limits())
    assert (str(info.value), info.value.field) == (
        "audio: cannot decode the response body: ('Received response with content-encoding: gzip, but failed to decode it.', "
        "error('Error -3 while decompressing data: incorrect header check'))", "audio")


def test_a_url_the_http_library_cannot_parse_is_named_and_long_texts_are_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("resolved a URL that cannot be sent"))
    host = "a b." + ".".join(["a" * 60] * 4)  # a space passes the label rules, not urllib3's parser
    with pytest.raises(DownloadError) as info:
        fetch.download(f"http://{host}/a.wav?sig=SECRET", str(tmp_path / "a"), limits())
    cause = f"Failed to parse: Host '{host}' contains"[:200]
    assert (str(info.value), info.value.field) == (f"audio: download failed: InvalidURL: {cause}...", "audio")


def test_a_redirect_to_a_url_that_cannot_be_split_is_a_download_failure(server, tmp_path):
    server.httpd.redirect_target = "http://[::1/a.wav"
    with pytest.raises(DownloadError) as info:
        fetch.download(server.url("/redirect"), str(tmp_path / "a"), limits())
    assert (str(info.value), info.value.field) == ("audio: download failed: ValueError: Invalid IPv6 URL", "audio")


def test_a_server_silent_for_the_stall_limit_fails_before_the_deadline(scripted, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "STALL_SECONDS", 0.3)
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch.download(scripted.url("/stall"), str(tmp_path / "a"), limits(timeout=20.0))  # silent mid-body
    assert (str(info.value), info.value.field) == ("audio: download timed out (no data)", "audio")
    with socket.socket() as silent:  # listening, never accepting: connected, and then not even headers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with pytest.raises(DownloadError) as info:
            fetch.download(f"http://127.0.0.1:{silent.getsockname()[1]}/a.wav", str(tmp_path / "a"), limits(timeout=20.0))
    assert (str(info.value), info.value.field) == ("audio: download timed out (no data)", "audio")
    assert time.monotonic() - started < 10  # two stalls of 0.3 s, far from the 20 s deadline


def test_the_deadline_ends_a_body_without_a_length_as_too_slow(scripted, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch.download(scripted.url("/unsized"), str(tmp_path / "a"), limits(timeout=0.5))
    assert (str(info.value), info.value.field) == ("audio: download timed out (server too slow)", "audio")
    assert scripted.hung_up.wait(10)  # the connection was shut, not left open


class BlockedDisk:
    """The download's destination as a FIFO this test reads: while the test does not read, the
    download is stuck writing, as on a full or slow disk."""

    def __init__(self, tmp_path):
        import fcntl
        import os

        self.path = tmp_path / "fifo"
        os.mkfifo(self.path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a reader first, so the download's open() does not wait
        self.capacity = fcntl.fcntl(self.fd, fcntl.F_GETPIPE_SZ)

    def wait_for_data(self):
        import select

        assert select.select([self.fd], [], [], 10)[0], "the download never wrote"

    def drain(self, download):
        """Read everything until the download ends (it closes the file)."""
        import os
        import select

        deadline = time.monotonic() + 10
        while not download.done() and time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.05)[0]:
                os.read(self.fd, 1 << 20)

    def close(self):
        import os

        if self.fd is not None:
            os.close(self.fd)  # the download's next write fails (EPIPE)
            self.fd = None


@pytest.fixture
def blocked_disk(tmp_path):
    disk = BlockedDisk(tmp_path)
    yield disk
    disk.close()  # whatever happened, a download still writing is released


def start_download(url, dest, timeout, cancelled=None):
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    future = pool.submit(fetch.download, url, str(dest), limits(timeout=timeout), cancelled)
    pool.shutdown(wait=False)
    return future


def test_the_deadline_passing_while_the_disk_is_slow_ends_the_download_as_too_slow(scripted, blocked_disk):
    scripted.flood_bytes = 3 * blocked_disk.capacity
    download = start_download(scripted.url("/flood"), blocked_disk.path, timeout=0.5)
    assert scripted.hung_up.wait(10)  # the deadline shut the connection while the download waited on the disk
    blocked_disk.drain(download)  # the disk frees up: the download sees the deadline before reading on
    with pytest.raises(DownloadError) as info:
        download.result(10)
    assert (str(info.value), info.value.field) == ("audio: download timed out (server too slow)", "audio")


def test_a_disk_failing_after_the_deadline_is_the_timeout_and_before_it_a_disk_error(scripted, blocked_disk, tmp_path):
    scripted.flood_bytes = 3 * blocked_disk.capacity
    download = start_download(scripted.url("/flood"), blocked_disk.path, timeout=0.5)
    assert scripted.hung_up.wait(10)
    blocked_disk.close()  # the write the download is stuck in fails
    with pytest.raises(DownloadError) as info:
        download.result(10)
    assert (str(info.value), info.value.field) == ("audio: download timed out after 0.5 s", "audio")

    (tmp_path / "before").mkdir()
    before = BlockedDisk(tmp_path / "before")
    try:
        download = start_download(scripted.url("/flood"), before.path, timeout=30.0)
        before.wait_for_data()
    finally:
        before.close()  # long before the deadline
    with pytest.raises(BrokenPipeError):  # not a download error: the handler reports it as storage
        download.result(10)


@pytest.mark.parametrize("path", ["/stall", "/half-headers"])  # in the body; while the headers arrive
def test_cancelling_stops_a_download_at_once(scripted, tmp_path, path):
    import threading

    from worker.errors import Cancelled

    cancelled = threading.Event()
    download = start_download(scripted.url(path), tmp_path / "a", timeout=30.0, cancelled=cancelled)
    assert scripted.answering.wait(10)
    cancelled.set()
    started = time.monotonic()
    with pytest.raises(Cancelled) as info:
        download.result(10)
    assert str(info.value) == "job cancelled during the download" and time.monotonic() - started < 1.5
    assert scripted.hung_up.wait(10)  # and the connection is shut


def test_a_server_hanging_up_without_an_answer_is_a_failed_connection(scripted, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch.download(scripted.url("/hang-up"), str(tmp_path / "a"), limits())
    assert (str(info.value), info.value.field) == (
        "audio: connection failed: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", "audio")


def test_a_body_shorter_than_its_declared_length_is_refused_even_when_chunked(scripted, tmp_path):
    """(chunked framing overrides Content-Length for the HTTP library, which then reads the 4 bytes
    without complaint: the declared length is checked here all the same)"""
    with pytest.raises(DownloadError) as info:
        fetch.download(scripted.url("/chunked-and-sized"), str(tmp_path / "a"), limits())
    assert (str(info.value), info.value.field) == ("audio: connection dropped: got 4 of 100 bytes", "audio")


def test_an_error_text_is_cut_at_200_characters_and_marked_only_when_cut():
    """Signed-URL query strings never reach an error; a text is marked "..." only if something was cut."""
    assert fetch._scrub("x" * 200) == "x" * 200
    assert fetch._scrub("x" * 201) == "x" * 200 + "..."
    assert fetch._scrub("GET https://bucket.example/a.wav?X-Amz-Signature=abc123 failed") == "GET https://bucket.example/a.wav failed"
