"""Judge0's callback_url: PUTs to a real receiver on this machine's network address, retries,
and no request ever reaching loopback or link-local addresses."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapter.judge0.callbacks import (
    REFUSED_MESSAGE,
    CallbackPolicy,
    check_callback_url,
    refused_address,
    send_callback,
)

ON = CallbackPolicy(enabled=True, timeout_s=2.0, max_tries=3, retry_delay_s=0.01)
BODY = {"token": "d85cd024-1548-4165-96c7-7bc88673f194", "stdout": "NDIK\n",
        "status": {"id": 3, "description": "Accepted"}, "time": "0.01", "memory": 3200}


def network_address() -> str | None:
    """This machine's address on its network (eth0), found by the route a UDP socket would
    take (nothing is sent); None when every route is the loopback one."""
    for probe in ("192.0.2.1", "10.255.255.255", "198.51.100.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.connect((probe, 9))
            except OSError:
                continue
            address = udp.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback:
            return str(address)
    return None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server in a thread recording every request; answers `statuses` in turn, the
    last one from then on (a 302 sends to `location`)."""

    host: str
    statuses: list[int] = field(default_factory=lambda: [200])
    location: str = ""
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/callback") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def answer(self) -> int:
        index = min(len(self.requests) - 1, len(self.statuses) - 1)
        return self.statuses[index]


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append(Received(self.command, self.path, dict(self.headers),
                                              body))
            status = receiver.answer()
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"done\n")

        do_PUT = do_POST = do_GET = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(host: str, statuses: list[int] | None = None, location: str = "",
              port: int = 0, tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(host, statuses or [200], location)
        server = ThreadingHTTPServer((host, port), handler_for(receiver))
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        receiver.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def address() -> str:
    found = network_address()
    if found is None:
        pytest.skip("this machine has no non-loopback IPv4 address for a receiver to listen on "
                    "(callbacks to loopback are refused by design)")
    return found


@pytest.fixture
def loopback(serve: Any) -> Receiver:
    """A receiver on 127.0.0.1 that no callback may ever reach."""
    receiver: Receiver = serve("127.0.0.1")
    return receiver


def send(url: str, body: dict[str, Any] = BODY, policy: CallbackPolicy = ON) -> bool:
    return asyncio.run(send_callback(url, body, policy))


def fake_resolution(monkeypatch: pytest.MonkeyPatch,
                    answers: dict[str, Callable[[], list[str]]]) -> list[str]:
    """Makes the event loop resolve the names of `answers` to the addresses their function
    gives at the time; the names asked are returned as they come."""
    asked: list[str] = []
    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(loop: asyncio.AbstractEventLoop, host: str, port: int,
                          *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return await real(loop, host, port, *args, **kwargs)  # type: ignore[arg-type]
        asked.append(host)
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port)) for ip in answers[host]()]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return asked


def test_the_submission_is_put_as_json(serve: Any, address: str) -> None:
    receiver = serve(address)
    assert send(receiver.url("/judge0/done?id=7"))
    [request] = receiver.requests
    assert request.method == "PUT"
    assert request.path == "/judge0/done?id=7"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Host"] == f"{address}:{receiver.port}"
    assert json.loads(request.body) == BODY


def test_two_5xx_then_a_2xx_take_three_tries(serve: Any, address: str) -> None:
    receiver = serve(address, [500, 503, 204])
    assert send(receiver.url())
    assert len(receiver.requests) == 3
    assert all(json.loads(request.body) == BODY for request in receiver.requests)


def test_a_receiver_always_failing_gets_max_tries_and_one_log_line(
        serve: Any, address: str, caplog: pytest.LogCaptureFixture) -> None:
    receiver = serve(address, [500])
    with caplog.at_level(logging.WARNING, logger="adapter.judge0"):
        assert not send(receiver.url(), policy=CallbackPolicy(True, 2.0, 4, 0.01))
    assert len(receiver.requests) == 4
    assert [record.getMessage() for record in caplog.records] == [
        f"callback to {receiver.url()} not delivered: answered 500"]


def test_the_tries_wait_between_them(serve: Any, address: str) -> None:
    receiver = serve(address, [500])
    started = time.monotonic()
    assert not send(receiver.url(), policy=CallbackPolicy(True, 2.0, 3, 0.3))
    assert time.monotonic() - started >= 0.6
    assert len(receiver.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_4xx_is_final(serve: Any, address: str, status: int) -> None:
    receiver = serve(address, [status, 200])
    assert not send(receiver.url())
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed(serve: Any, address: str, loopback: Receiver) -> None:
    receiver = serve(address, [302], location=loopback.url())
    assert not send(receiver.url())
    assert len(receiver.requests) == 1
    assert loopback.requests == []


@pytest.fixture
def silent(address: str) -> Iterator[tuple[str, list[socket.socket]]]:
    """A receiver that accepts connections and never answers: the URL and its connections."""
    listener = socket.create_server((address, 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://{address}:{listener.getsockname()[1]}/", accepted
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_receiver_that_never_answers_is_given_up(
        silent: tuple[str, list[socket.socket]]) -> None:
    url, accepted = silent
    started = time.monotonic()
    assert not send(url, policy=CallbackPolicy(True, timeout_s=0.3, max_tries=2,
                                               retry_delay_s=0.01))
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 3
    assert len(accepted) == 2


def test_a_connection_refused_is_tried_again(address: str) -> None:
    with socket.create_server((address, 0)) as closed:
        port = closed.getsockname()[1]
    # Nothing listens on the port any more: each try is refused at once.
    assert not send(f"http://{address}:{port}/", policy=CallbackPolicy(True, 1.0, 2, 0.01))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/",
    "http://127.1:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f.0.0.1:{port}/",
    "http://[::1]:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::7f00:1]:{port}/",
    "http://[2002:7f00:1::]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://[::]:{port}/",
    "http://224.0.0.1:{port}/",
    "https://127.0.0.1:{port}/",
])
def test_refused_literals_are_refused_at_submit_and_at_send(url: str, loopback: Receiver) -> None:
    url = url.format(port=loopback.port)
    assert check_callback_url(url, ON) == REFUSED_MESSAGE
    assert not send(url)
    assert loopback.requests == []


def test_a_name_resolving_to_loopback_is_refused_at_send(loopback: Receiver) -> None:
    url = f"http://localhost:{loopback.port}/"
    assert check_callback_url(url, ON) is None  # a name: only sending resolves it
    assert not send(url)
    assert loopback.requests == []


def test_a_name_with_any_refused_address_is_refused(
        monkeypatch: pytest.MonkeyPatch, serve: Any, address: str) -> None:
    receiver = serve(address)
    asked = fake_resolution(monkeypatch, {"grader.test": lambda: [address, "127.0.0.1"]})
    assert not send(f"http://grader.test:{receiver.port}/")
    assert asked == ["grader.test"]  # refused for good: not tried again
    assert receiver.requests == []


def test_the_request_goes_to_the_checked_address_with_the_name_as_host(
        monkeypatch: pytest.MonkeyPatch, serve: Any, address: str) -> None:
    # The address checked is the one connected to: the name is not looked up again by the
    # HTTP client, so an answer changing in between (DNS rebinding) changes nothing.
    receiver = serve(address, [500, 200])
    asked = fake_resolution(monkeypatch, {"grader.test": lambda: [address]})
    assert send(f"http://grader.test:{receiver.port}/cb")
    assert asked == ["grader.test", "grader.test"]  # once per try, each checked
    assert [r.headers["Host"] for r in receiver.requests] == [f"grader.test:{receiver.port}"] * 2


def test_rebinding_between_tries_is_caught(serve: Any, address: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The name answers the network address for the first try, then loopback, where a
    # receiver listens on the same port: the second try is refused, not sent there.
    receiver = serve(address, [500])
    loopback = serve("127.0.0.1", port=receiver.port)
    asked = fake_resolution(monkeypatch, {"grader.test": lambda: [address] if not receiver.requests
                                          else ["127.0.0.1"]})
    assert not send(f"http://grader.test:{receiver.port}/")
    assert asked == ["grader.test", "grader.test"]
    assert len(receiver.requests) == 1
    assert loopback.requests == []


@dataclass
class Certificates:
    ca_file: Path
    server: ssl.SSLContext
    server_names: list[str | None]


def certificates_for(name: str, folder: Path) -> Certificates:
    """A CA written to `folder` and a server context whose certificate it signed for `name`;
    the server records the TLS server name each client asks for."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Callback test CA", ca_key, "Callback test CA", ca_key, True)
    leaf = certificate(name, key, "Callback test CA", ca_key, False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(
        leaf.public_bytes(pem) + key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "server.pem")
    names: list[str | None] = []
    server.sni_callback = lambda sock, server_name, context: names.append(server_name)
    return Certificates(folder / "ca.pem", server, names)


def test_https_goes_to_the_checked_address_verified_against_the_name(
        monkeypatch: pytest.MonkeyPatch, serve: Any, address: str, tmp_path: Path) -> None:
    tls = certificates_for("grader.test", tmp_path)
    monkeypatch.setattr("certifi.where", lambda: str(tls.ca_file))  # what httpx trusts
    receiver = serve(address, tls=tls.server)
    asked = fake_resolution(monkeypatch, {"grader.test": lambda: [address]})
    assert send(f"https://grader.test:{receiver.port}/cb")
    assert asked == ["grader.test"]
    assert tls.server_names == ["grader.test"]
    [request] = receiver.requests
    assert request.headers["Host"] == f"grader.test:{receiver.port}"
    assert json.loads(request.body) == BODY


def test_https_with_a_certificate_for_another_name_is_not_sent(
        monkeypatch: pytest.MonkeyPatch, serve: Any, address: str, tmp_path: Path) -> None:
    tls = certificates_for("other.test", tmp_path)
    monkeypatch.setattr("certifi.where", lambda: str(tls.ca_file))
    receiver = serve(address, tls=tls.server)
    fake_resolution(monkeypatch, {"grader.test": lambda: [address]})
    assert not send(f"https://grader.test:{receiver.port}/cb")
    assert receiver.requests == []


def test_disabled_callbacks_refuse_everything(serve: Any, address: str) -> None:
    receiver = serve(address)
    off = CallbackPolicy()
    assert check_callback_url(receiver.url(), off) == "callbacks are disabled on this service"
    assert not send(receiver.url(), policy=off)
    assert receiver.requests == []


def test_a_body_that_is_not_json_is_logged_not_raised(
        serve: Any, address: str, caplog: pytest.LogCaptureFixture) -> None:
    receiver = serve(address)
    with caplog.at_level(logging.WARNING, logger="adapter.judge0"):
        assert not send(receiver.url(), body={"x": object()})
    assert len(caplog.records) == 1
    assert receiver.requests == []


@pytest.mark.parametrize(("url", "message"), [
    ("http://grader.internal/judge0", None),
    ("https://grader.example.com:8443/cb?token=x", None),
    ("http://10.1.2.3/cb", None),
    ("http://192.168.0.10:3000/", None),
    ("http://[fd00::1]/", None),
    ("ftp://grader.example.com/", "must be an http or https URL"),
    ("file:///etc/passwd", "must be an http or https URL"),
    ("grader.example.com/cb", "must be an http or https URL"),
    ("http:///cb", "has no host"),
    ("http://user:secret@grader.example.com/", "must not contain a user name or password"),
    ("http://grader.example.com@169.254.169.254/", "must not contain a user name or password"),
    ("http://@grader.example.com/", "must not contain a user name or password"),
    ("http://grader.example.com:99999/", "has an invalid port"),
    ("http://grader.example.com:0/", "has an invalid port"),
    ("http://grader.example.com:x/", "is not a valid URL"),
    ("http://[::1/", "is not a valid URL"),
    ("http://g.example/" + "a" * 2031, None),
    ("http://g.example/" + "a" * 2032, "must be at most 2048 characters"),
])
def test_callback_urls_are_checked_at_submit(url: str, message: str | None) -> None:
    assert check_callback_url(url, ON) == message


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("127.255.0.9", True), ("169.254.169.254", True), ("0.0.0.0", True),
    ("0.1.2.3", True), ("224.0.0.251", True), ("239.1.1.1", True), ("255.255.255.255", True),
    ("::1", True), ("::", True), ("fe80::1", True), ("ff02::1", True),
    ("::ffff:127.0.0.1", True), ("::ffff:169.254.169.254", True), ("::ffff:0.0.0.0", True),
    ("::127.0.0.1", True), ("64:ff9b::7f00:1", True), ("64:ff9b::a9fe:a9fe", True),
    ("2002:7f00:1::1", True), ("2002:a9fe:a9fe::", True),
    ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False), ("8.8.8.8", False),
    ("192.0.2.2", False), ("100.64.0.1", False), ("fd00::1", False), ("2001:db8::1", False),
    ("::ffff:10.0.0.1", False), ("64:ff9b::808:808", False), ("2002:808:808::", False),
])
def test_refused_addresses(address: str, refused: bool) -> None:
    assert refused_address(ipaddress.ip_address(address)) is refused
