"""Judge0's callback_url through the real service: the finished submission PUT to a receiver on
this machine's network address, and loopback refused when the submission is made."""

from __future__ import annotations

import base64
import io
import json
import stat
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from ..utils import Server, assert_nothing_left, only_runtimes
from ..utils import serve as serve_service
from .test_judge0 import wait_for
from .test_judge0_callbacks import Receiver, address, loopback, serve  # noqa: F401 - fixtures

PYTHON = 71


@pytest.fixture(scope="module")
def calling_back() -> Iterator[Server]:
    env = {**only_runtimes("python.toml", "python_kernel.py"), "SANDBOX_CALLBACKS": "true",
           "SANDBOX_CALLBACK_TIMEOUT_S": "2"}
    with serve_service(env) as srv:
        yield srv


def test_a_finished_submission_is_put_to_its_callback(calling_back: Server, serve: Any,  # noqa: F811
                                                      address: str) -> None:  # noqa: F811
    receiver: Receiver = serve(address)
    created = calling_back.post("/submissions", {
        "source_code": "print('called back')", "language_id": PYTHON,
        "callback_url": receiver.url("/judged")})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    wait_for(calling_back, token)
    deadline = time.monotonic() + 10
    while not receiver.requests:
        assert time.monotonic() < deadline, "no callback arrived"
        time.sleep(0.05)
    [put] = receiver.requests
    assert (put.method, put.path) == ("PUT", "/judged")
    body = json.loads(put.body)
    # Always in base64, as Judge0 sends it, with the default fields.
    assert body["token"] == token and body["status"] == {"id": 3, "description": "Accepted"}
    assert base64.b64decode(body["stdout"]) == b"called back\n"


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/x", "http://[::1]:{port}/x",
                                 "http://169.254.169.254/latest/meta-data/",
                                 "http://0.0.0.0:{port}/", "file:///etc/passwd"])
def test_callbacks_to_loopback_and_link_local_are_refused(calling_back: Server,
                                                          loopback: Receiver,  # noqa: F811
                                                          url: str) -> None:
    answer = calling_back.post("/submissions", {
        "source_code": "print(1)", "language_id": PYTHON,
        "callback_url": url.format(port=loopback.port)})
    assert answer.status_code == 422
    assert list(answer.json()) == ["callback_url"]
    assert loopback.requests == []


def test_callbacks_are_off_unless_turned_on(server: Server) -> None:
    answer = server.post("/submissions", {"source_code": "print(1)", "language_id": PYTHON,
                                          "callback_url": "http://192.0.2.2:9/"})
    assert answer.status_code == 422
    assert "callback" in answer.json()["callback_url"][0]


def zipped(*entries: tuple[zipfile.ZipInfo | str, bytes]) -> str:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return base64.b64encode(archive.getvalue()).decode()


def link(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize("archive", [
    pytest.param(zipped(link("passwd", "/etc/passwd")), id="symlink"),
    pytest.param(zipped(("../escape.py", b"x")), id="dot-dot"),
    pytest.param(zipped(("/tmp/absolute.py", b"x")), id="absolute"),
    pytest.param(zipped(("main.py", b"print('replaced')")), id="over-the-source"),
    pytest.param(zipped(*((f"f{i}", b"") for i in range(300))), id="too-many"),
    pytest.param(zipped(("bomb", b"\0" * (11 << 20))), id="too-big"),
])
def test_hostile_archives_are_refused_and_nothing_runs(server: Server, archive: str) -> None:
    answer = server.post("/submissions", {"source_code": "print(1)", "language_id": PYTHON,
                                          "additional_files": archive})
    assert answer.status_code == 422, answer.text
    assert list(answer.json()) == ["additional_files"]
    # Refused before anything ran: no run, no folder, and the service answers.
    assert_nothing_left(server)
    assert server.health().status_code == 200
