"""Judge0 CE's API on the real service: the `judge0` SDK unchanged, every status reached by a
real program, base64 both ways, the bounds of every field, batches, languages and the
information routes."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import judge0
import pytest

from ..utils import Server, assert_nothing_left, only_runtimes, serve

FINAL = 2  # statuses above Processing are final


def wait_for(server: Server, token: str, params: dict[str, str] | None = None,
             timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with server.client() as http:
        while True:
            answer = http.get(f"/submissions/{token}", params={"fields": "*", **(params or {})})
            assert answer.status_code == 200, answer.text
            submission: dict[str, Any] = answer.json()
            if submission["status"]["id"] > FINAL:
                return submission
            assert time.monotonic() < deadline, submission
            time.sleep(0.05)


def run(server: Server, **fields: Any) -> dict[str, Any]:
    """One submission, created, then polled until it finishes (as most clients do)."""
    created = server.post("/submissions", fields)
    assert created.status_code == 201, created.text
    assert list(created.json()) == ["token"]
    return wait_for(server, created.json()["token"])


def waited(server: Server, params: dict[str, str] | None = None,
           **fields: Any) -> httpx.Response:
    with server.client() as http:
        return http.post("/submissions", params={"wait": "true", **(params or {})}, json=fields)


# ---- the official SDK, unchanged -----------------------------------------------------------------

def test_the_judge0_sdk_runs_a_program_and_test_cases(server: Server) -> None:
    client = judge0.Client(server.url)  # reads /languages and /config_info when made
    assert client.get_about()["version"] == "1.13.1"
    single = judge0.run(client=client, source_code="print(input()[::-1])",
                        language=judge0.PYTHON, stdin="abc")
    assert (single.status, single.stdout) == (judge0.Status.ACCEPTED, "cba\n")
    assert float(single.time) >= 0 and single.memory > 0
    cases = judge0.run(client=client, source_code="n = int(input())\nprint(n * 2)",
                       language=judge0.PYTHON, test_cases=[("1", "2"), ("5", "10"), ("3", "7")])
    assert [(case.status, case.stdout) for case in cases] == [
        (judge0.Status.ACCEPTED, "2\n"), (judge0.Status.ACCEPTED, "10\n"),
        (judge0.Status.WRONG_ANSWER, "6\n")]
    compiled = judge0.run(client=client, language=judge0.CPP,
                          source_code='#include <iostream>\nint main(){std::cout<<"hi\\n";}')
    assert (compiled.status, compiled.stdout) == (judge0.Status.ACCEPTED, "hi\n")
    broken = judge0.run(client=client, language=judge0.C, source_code="int main( {")
    assert broken.status == judge0.Status.COMPILATION_ERROR
    assert "error" in broken.compile_output
    assert_nothing_left(server)


# ---- every status, by a real program -------------------------------------------------------------

CPP = 54
C = 50
PYTHON = 71

STATUS_PROGRAMS = [
    pytest.param(PYTHON, "print(input())", {"stdin": "x", "expected_output": "x\n\n"},
                 3, None, id="accepted"),
    pytest.param(PYTHON, "print(5)", {"expected_output": "6"}, 4, None, id="wrong-answer"),
    pytest.param(PYTHON, "while True: pass", {"cpu_time_limit": 0.3, "cpu_extra_time": 0.2},
                 5, "Time limit exceeded", id="cpu-time"),
    pytest.param(PYTHON, "import time\ntime.sleep(5)", {"wall_time_limit": 0.5},
                 5, "Time limit exceeded (wall clock)", id="wall-time"),
    pytest.param(CPP, "int main() { return }", {}, 6, None, id="compilation-error"),
    pytest.param(CPP, "int main() { volatile int *p = nullptr; *p = 1; }", {},
                 7, "Caught fatal signal 11", id="sigsegv"),
    pytest.param(C, '#include <stdio.h>\nint main(void){FILE*f=fopen("big","w");'
                    'for(int i=0;i<100000;i++)fputs("0123456789",f);fclose(f);}',
                 {"max_file_size": 64}, 8, None, id="sigxfsz"),
    pytest.param(C, "int main(int argc, char **argv){volatile int z = argc - 1; return 100 / z;}", {},
                 9, "Caught fatal signal 8", id="sigfpe"),
    pytest.param(C, "#include <stdlib.h>\nint main(void){abort();}", {},
                 10, "Caught fatal signal 6", id="sigabrt"),
    pytest.param(PYTHON, "raise SystemExit(3)", {}, 11, "Exited with error status 3",
                 id="nzec"),
    pytest.param(C, "#include <signal.h>\nint main(void){raise(SIGUSR1);}", {},
                 12, "Caught fatal signal 10", id="other-signal"),
    pytest.param(CPP, "#include <cstring>\nint main(){for(;;){"
                      "char *p = new char[1 << 20]; memset(p, 1, 1 << 20);}}",
                 {"memory_limit": 65536}, 12, "Memory limit exceeded", id="memory"),
]


@pytest.mark.parametrize(("language_id", "code", "extra", "status", "message"), STATUS_PROGRAMS)
def test_every_status_is_reached_by_a_real_program(
        server: Server, language_id: int, code: str, extra: dict[str, Any], status: int,
        message: str | None) -> None:
    submission = run(server, source_code=code, language_id=language_id, **extra)
    assert submission["status"]["id"] == status, submission
    with server.client() as http:
        described = {row["id"]: row["description"] for row in http.get("/statuses").json()}
    assert submission["status"]["description"] == described[status]
    if message is not None:
        assert submission["message"] == message
    if status == 6:
        assert "error" in submission["compile_output"] and submission["time"] is None
    if status == 11:
        assert (submission["exit_code"], submission["exit_signal"]) == (3, None)
    if status in (7, 9, 10):
        assert submission["exit_signal"] is not None and submission["exit_code"] is None
    assert submission["finished_at"] >= submission["created_at"]
    assert_nothing_left(server)


def test_statuses_are_judge0s_fourteen(server: Server) -> None:
    with server.client() as http:
        listed = http.get("/statuses").json()
    assert [status["id"] for status in listed] == list(range(1, 15))
    assert listed[0] == {"id": 1, "description": "In Queue"}
    assert listed[6] == {"id": 7, "description": "Runtime Error (SIGSEGV)"}
    assert listed[13] == {"id": 14, "description": "Exec Format Error"}


def test_a_queued_submission_is_seen_in_queue_or_processing(server: Server) -> None:
    created = server.post("/submissions", {"source_code": "import time\ntime.sleep(1)",
                                           "language_id": PYTHON})
    token = created.json()["token"]
    with server.client() as http:
        early = http.get(f"/submissions/{token}").json()
    assert early["status"]["id"] in (1, 2)
    assert early["time"] is None and early["stdout"] is None
    assert wait_for(server, token)["status"]["id"] == 3


# ---- text: base64 and UTF-8 ----------------------------------------------------------------------

def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def test_base64_in_and_out(server: Server) -> None:
    code = "import sys\nprint(sys.stdin.read().upper(), end='')\nprint('é', file=sys.stderr)"
    answer = waited(server, {"base64_encoded": "true", "fields": "*"}, source_code=b64(code),
                    language_id=PYTHON, stdin=b64("abc\n"), expected_output=b64("ABC"))
    assert answer.status_code == 201, answer.text
    submission = answer.json()
    assert submission["status"]["id"] == 3
    assert base64.b64decode(submission["stdout"]) == b"ABC\n"
    assert base64.b64decode(submission["stderr"]) == "é\n".encode()
    assert base64.b64decode(submission["source_code"]).decode() == code
    # Base64 as MIME writes it, with line breaks, decodes too.
    wrapped = base64.encodebytes(b"print(42)\n" * 20).decode()
    assert "\n" in wrapped.strip()
    again = waited(server, {"base64_encoded": "true"}, source_code=wrapped, language_id=PYTHON)
    assert base64.b64decode(again.json()["stdout"]) == b"42\n" * 20


def test_output_that_is_not_utf8_needs_base64(server: Server) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok')"
    answer = waited(server, source_code=code, language_id=PYTHON)
    assert answer.status_code == 201
    body = answer.json()
    assert body["error"] == ("some attributes for this submission cannot be converted to "
                             "UTF-8, use base64_encoded=true query parameter")
    token = body["token"]
    with server.client() as http:
        plain = http.get(f"/submissions/{token}")
        encoded = http.get(f"/submissions/{token}", params={"base64_encoded": "true"})
        batch = http.get("/submissions/batch", params={"tokens": token})
    assert plain.status_code == 400 and "base64_encoded=true" in plain.json()["error"]
    assert base64.b64decode(encoded.json()["stdout"]) == b"\xff\xfe ok"
    assert batch.status_code == 400 and "one or more submissions" in batch.json()["error"]


def test_invalid_base64_is_refused(server: Server) -> None:
    with server.client() as http:
        answer = http.post("/submissions", params={"base64_encoded": "true"},
                           json={"source_code": "not base64!", "language_id": PYTHON})
    assert answer.status_code == 422
    assert answer.json() == {"source_code": ["is not valid base64"]}


# ---- fields and their bounds -----------------------------------------------------------------------

BOUNDS = [
    ("cpu_time_limit", 15.5, "must be less than or equal to 15"),
    ("cpu_time_limit", 0, "must be greater than 0"),
    ("cpu_extra_time", 6, "must be less than or equal to 5"),
    ("cpu_extra_time", -1, "must be greater than or equal to 0"),
    ("wall_time_limit", 21, "must be less than or equal to 20"),
    ("memory_limit", 1024, "must be greater than or equal to 2048"),
    ("memory_limit", 512001, "must be less than or equal to 512000"),
    ("memory_limit", 1.5e5 + 0.5, "must be an integer"),
    ("stack_limit", 128001, "must be less than or equal to 128000"),
    ("max_processes_and_or_threads", 0, "must be greater than or equal to 1"),
    ("max_processes_and_or_threads", 121, "must be less than or equal to 120"),
    ("max_file_size", -1, "must be greater than or equal to 0"),
    ("max_file_size", 4097, "must be less than or equal to 4096"),
    ("number_of_runs", 21, "must be less than or equal to 20"),
    ("number_of_runs", "many", "is not a number"),
    ("enable_network", True, "this option cannot be enabled"),
    ("enable_per_process_and_thread_time_limit", True, "this option cannot be enabled"),
    ("redirect_stderr_to_stdout", "maybe", "must be true or false"),
    ("command_line_arguments", "x" * 513, "is too long (maximum is 512 characters)"),
    ("command_line_arguments", "'unclosed", "cannot be split into arguments"),
    ("compiler_options", "-fplugin=evil.so", "'-fplugin=evil.so' is not accepted"),
    ("additional_files", "!!", "must be a base64-encoded zip archive"),
]


@pytest.mark.parametrize(("field", "value", "error"), BOUNDS,
                         ids=[f"{f}={str(v)[:12]}" for f, v, _ in BOUNDS])
def test_each_field_out_of_bounds_is_refused_by_name(server: Server, field: str, value: Any,
                                                    error: str) -> None:
    language = CPP if field == "compiler_options" else PYTHON
    answer = server.post("/submissions", {"source_code": "print(1)", "language_id": language,
                                          field: value})
    assert answer.status_code == 422
    assert list(answer.json()) == [field]
    assert answer.json()[field][0].startswith(error), answer.json()


def test_missing_and_unknown_fields(server: Server) -> None:
    answer = server.post("/submissions", {"language_id": 9999})
    assert answer.status_code == 422
    assert answer.json() == {"source_code": ["can't be blank"],
                             "language_id": ["language with id 9999 doesn't exist"]}
    assert server.post("/submissions", {"source_code": "x"}).json() == {
        "language_id": ["can't be blank"]}
    with server.client() as http:
        bad = http.post("/submissions", content=b"{not json", headers={
            "Content-Type": "application/json"})
        fields = http.get("/submissions/x", params={"fields": "stdout,colour,mood"})
        unknown = http.get("/submissions/00000000-0000-4000-8000-000000000000")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    assert fields.status_code == 400 and fields.json() == {"error": "invalid fields: [colour, mood]"}
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_limits_and_defaults_reach_the_program(server: Server) -> None:
    code = ("import resource, sys\n"
            "print(resource.getrlimit(resource.RLIMIT_STACK)[0] // 1024)\n"
            "print(resource.getrlimit(resource.RLIMIT_FSIZE)[0] // 1024)\n"
            "print(sys.argv[1:])")
    submission = run(server, source_code=code, language_id=PYTHON, stack_limit=32000,
                     max_file_size=3, command_line_arguments="a 'b c' $(rm) ;x")
    assert submission["status"]["id"] == 3, submission
    # $ ; & < > | and ` are stripped, as Judge0 strips them; quotes split as a shell would.
    assert submission["stdout"] == "32000\n3\n['a', 'b c', '(rm)', 'x']\n"
    assert submission["stack_limit"] == 32000 and submission["cpu_time_limit"] == "5.0"


def test_fields_choose_what_is_answered(server: Server) -> None:
    token = server.post("/submissions", {"source_code": "print(7)",
                                         "language_id": PYTHON}).json()["token"]
    wait_for(server, token)
    with server.client() as http:
        default = http.get(f"/submissions/{token}").json()
        chosen = http.get(f"/submissions/{token}",
                          params={"fields": "stdout,status_id,language"}).json()
    assert list(default) == ["token", "time", "memory", "stdout", "stderr", "compile_output",
                             "message", "status"]
    assert chosen == {"stdout": "7\n", "status_id": 3,
                      "language": {"id": PYTHON, "name": chosen["language"]["name"]}}
    assert chosen["language"]["name"].startswith("Python (3.")


def test_redirect_number_of_runs_and_compiler_options(server: Server) -> None:
    merged = run(server, source_code="import sys\nprint('out')\nprint('err', file=sys.stderr)",
                 language_id=PYTHON, redirect_stderr_to_stdout=True)
    assert sorted(merged["stdout"].splitlines()) == ["err", "out"] and merged["stderr"] == ""
    repeated = run(server, source_code="print(1)", language_id=PYTHON, number_of_runs=3)
    assert repeated["status"]["id"] == 3 and repeated["number_of_runs"] == 3
    cxx20 = ('#include <iostream>\n#include <string>\nint main(){std::string s="cpp20";'
             'std::cout<<s.starts_with("cpp")<<"\\n";}')
    default = run(server, source_code=cxx20, language_id=CPP)
    chosen = run(server, source_code=cxx20, language_id=CPP, compiler_options="-std=c++20 -O2")
    assert default["status"]["id"] == 6  # C++17 has no starts_with
    assert (chosen["status"]["id"], chosen["stdout"]) == (3, "1\n")


def test_additional_files_are_placed_beside_the_source(server: Server) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("helper.py", "def answer():\n    return 42\n")
        zf.writestr("data/input.txt", "from a file\n")
    submission = run(server, source_code="import helper\nprint(helper.answer())\n"
                                         "print(open('data/input.txt').read(), end='')",
                     language_id=PYTHON, additional_files=b64(archive.getvalue()))
    assert (submission["status"]["id"], submission["stdout"]) == (3, "42\nfrom a file\n")
    assert base64.b64decode(submission["additional_files"]) == archive.getvalue()


# ---- batches ----------------------------------------------------------------------------------------

def test_a_batch_answers_per_submission(server: Server) -> None:
    items = [{"source_code": b64("print(1)"), "language_id": PYTHON},
             {"source_code": b64("print(2)"), "language_id": 4242},
             {"source_code": b64("print(3)"), "language_id": PYTHON, "stdin": b64("x")}]
    with server.client() as http:
        created = http.post("/submissions/batch", params={"base64_encoded": "true"},
                            json={"submissions": items})
    assert created.status_code == 201
    first, second, third = created.json()
    assert second == {"language_id": ["language with id 4242 doesn't exist"]}
    tokens = [first["token"], third["token"]]
    for token in tokens:
        wait_for(server, token)
    with server.client() as http:
        got = http.get("/submissions/batch", params={
            "tokens": f"{tokens[0]},00000000-0000-4000-8000-000000000000,{tokens[1]}",
            "fields": "stdout,status_id"}).json()
    assert got == {"submissions": [{"stdout": "1\n", "status_id": 3}, None,
                                   {"stdout": "3\n", "status_id": 3}]}


def test_batch_bounds(server: Server) -> None:
    one = {"source_code": "print(1)", "language_id": PYTHON}
    with server.client() as http:
        many = http.post("/submissions/batch", json={"submissions": [one] * 21})
        none = http.post("/submissions/batch", json={"submissions": []})
        invalid = http.post("/submissions/batch", json={"submissions": [{"language_id": 1}]})
        tokens = http.get("/submissions/batch", params={"tokens": ",".join(["t"] * 21)})
    assert many.status_code == 400 and many.json() == {
        "error": "number of submissions in a batch should be less than or equal to 20"}
    assert none.status_code == 400 and none.json() == {
        "error": "there should be at least one submission in a batch"}
    assert invalid.status_code == 422 and invalid.json() == [{
        "source_code": ["can't be blank"],
        "language_id": ["language with id 1 doesn't exist"]}]
    assert tokens.status_code == 400


# ---- languages and information -----------------------------------------------------------------

def test_languages_are_the_installed_ones_by_judge0_id(server: Server) -> None:
    with server.client() as http:
        listed = http.get("/languages").json()
        everything = http.get("/languages/all").json()
        java = http.get("/languages/62").json()
        missing = http.get("/languages/70")
    assert [language["id"] for language in listed] == [46, 50, 52, 54, 60, 62, 63, 71, 73, 75]
    assert everything == listed
    names = {language["id"]: language["name"] for language in listed}
    assert names[71].startswith("Python (3.") and names[54].startswith("C++ (GCC ")
    assert java["source_file"] == "Main.java" and "javac" in java["compile_cmd"]
    assert java["is_archived"] is False
    assert missing.status_code == 404 and "70" in missing.json()["error"]


def test_information_routes(server: Server) -> None:
    with server.client() as http:
        version = http.get("/version")
        config = http.get("/config_info").json()
        system = http.get("/system_info").json()
        workers = http.get("/workers").json()
    assert version.text == "1.13.1"
    # The SDK's own model of /config_info validates it.
    model = judge0.base_types.Config(**config)
    assert model.enable_wait_result and not model.enable_network
    assert (model.max_cpu_time_limit, model.max_max_file_size) == (15, 4096)
    assert system["CPU(s)"].isdigit()
    assert workers[0]["available"] >= 1


# ---- settings: waiting, the queue's bound, retention ---------------------------------------------

@pytest.fixture(scope="module")
def small_queue() -> Iterator[Server]:
    """A server with waiting turned off, a queue of two and retention of three."""
    env = {**only_runtimes("python.toml", "python_kernel.py"), "SANDBOX_JUDGE0_WAIT": "false",
           "SANDBOX_MAX_QUEUED_SUBMISSIONS": "2", "SANDBOX_MAX_CONCURRENT_RUNS": "1",
           "SANDBOX_SUBMISSIONS_KEPT": "3"}
    with serve(env) as srv:
        yield srv


def test_wait_can_be_turned_off(small_queue: Server) -> None:
    answer = waited(small_queue, source_code="print(1)", language_id=PYTHON)
    assert answer.status_code == 400 and answer.json() == {"error": "wait not allowed"}


def test_a_full_queue_answers_503_and_loses_nothing(small_queue: Server) -> None:
    slow = {"source_code": "import time\ntime.sleep(1.5)", "language_id": PYTHON}
    tokens = []
    refused = 0
    for _ in range(6):
        answer = small_queue.post("/submissions", slow)
        if answer.status_code == 503:
            assert answer.json() == {"error": "queue is full"}
            refused += 1
        else:
            assert answer.status_code == 201
            tokens.append(answer.json()["token"])
    assert refused >= 2 and len(tokens) >= 3
    for token in tokens:
        assert wait_for(small_queue, token)["status"]["id"] == 3
    assert small_queue.post("/submissions", slow).status_code == 201


def test_retention_keeps_the_newest(small_queue: Server) -> None:
    tokens = []
    for number in range(5):
        token = small_queue.post("/submissions", {"source_code": f"print({number})",
                                                  "language_id": PYTHON}).json()["token"]
        wait_for(small_queue, token)
        tokens.append(token)
    deadline = time.monotonic() + 20  # housekeeping runs every few seconds
    with small_queue.client() as http:
        while http.get(f"/submissions/{tokens[0]}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert http.get(f"/submissions/{tokens[1]}").status_code == 404
        assert all(http.get(f"/submissions/{token}").status_code == 200
                   for token in tokens[2:])
