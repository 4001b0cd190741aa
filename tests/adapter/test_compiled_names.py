"""Source files named like what the compile writes, through real HTTP and real g++.

C++ compiles to `main` in the working directory: a source file of that name would be
overwritten by the compile, and on a later compile-cache hit the cached binary would be placed
over it. Such a name is refused up front, naming the field, on every route that takes files.
"""

from __future__ import annotations

import secrets

import pytest

from ..utils import Server, assert_nothing_left

PROGRAM = '#include <iostream>\nint main() {{ std::cout << "{}\\n"; }}\n'
REFUSED = "files[1].name: 'main' is the name of the program the compile writes"


def assert_service_intact(server: Server) -> None:
    assert server.health().status_code == 200
    assert_nothing_left(server)


@pytest.mark.gxx
@pytest.mark.parametrize("name", ["main", "./main"])
def test_a_piston_file_named_like_the_binary_is_400_twice(server: Server, name: str) -> None:
    # Fresh sources each time: the first call would have compiled them, the second hit the
    # cache.
    body = {"language": "c++", "version": "*", "files": [
        {"name": "main.cpp", "content": PROGRAM.format(secrets.token_hex(8))},
        {"name": name, "content": "not a program"}]}
    for _ in range(2):
        response = server.post("/api/v2/execute", json=body)
        assert (response.status_code, response.json()) == (400, {
            "message": REFUSED.replace("'main'", repr(name.removeprefix("./")))})
    assert_service_intact(server)


@pytest.mark.gxx
def test_a_batch_file_named_like_the_binary_is_400(server: Server) -> None:
    response = server.post("/batch", json={"language": "c++", "files": [
        {"name": "main.cpp", "content": PROGRAM.format("x")},
        {"name": "main", "content": "x"}], "cases": [{"stdin": ""}]})
    assert (response.status_code, response.json()) == (400, {"message": REFUSED})
    assert_service_intact(server)


@pytest.mark.gxx
def test_other_names_compile_and_hit_the_cache(server: Server) -> None:
    # A file in a folder named `main.d`, or `main.h` beside it, is no clash: two calls, the
    # second from the cache, both run the program.
    word = secrets.token_hex(8)
    body = {"language": "c++", "version": "*", "files": [
        {"name": "main.cpp", "content": '#include "main.h"\n' + PROGRAM.format(word)},
        {"name": "main.h", "content": "// nothing\n"},
        {"name": "main.d/notes.txt", "content": "x"}]}
    for _ in range(2):
        response = server.post("/api/v2/execute", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["run"]["stdout"] == word + "\n"
    assert_service_intact(server)
