"""Operating the service: metrics, the OpenAPI document, the startup and access log lines."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from ..conftest import WARM_PASS
from ..utils import Server


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when it is not there yet."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics_text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if found == wanted:
            return float(value)
    return 0.0


def get_metrics(server: Server) -> str:
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_count_runs_by_runtime_and_outcome_and_time_requests(server: Server) -> None:
    before = get_metrics(server)
    server.post("/python/execute", {"properties": {"code": "print(1)"}})
    server.post("/python/execute", {"properties": {"code": "raise SystemExit(3)"}})
    server.post("/api/v2/execute", {"language": "py", "version": "*",
                                    "files": [{"content": "print(2)"}]})
    after = get_metrics(server)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("sandbox_runs_total", runtime="python", outcome="ok") == 2
    assert grew("sandbox_runs_total", runtime="python", outcome="nonzero_exit") == 1
    assert grew("sandbox_run_duration_seconds_count", runtime="python") == 3
    # Requests are labelled by route template, never by the raw path.
    assert grew("sandbox_request_duration_seconds_count", method="POST",
                route="/{language}/execute", status="200") == 2
    assert grew("sandbox_request_duration_seconds_count", method="POST",
                route="/api/v2/execute", status="200") == 1
    with server.client() as client:
        client.get("/no/such/path/12345")
    assert "/no/such/path" not in get_metrics(server)
    assert sample(after, "sandbox_runs_in_flight") == 0
    assert sample(after, "sandbox_runs_waiting") == 0
    assert "sandbox_rejections_total" in after


def test_openapi_document_is_valid_and_names_every_route(app_client: TestClient) -> None:
    response = app_client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    served = {re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
              for route in app_client.app.routes  # type: ignore[attr-defined]
              if isinstance(route, (Route, WebSocketRoute))}
    assert served == set(document["paths"])
    languages = document["paths"]["/{language}/execute"]["post"]["parameters"][0]["schema"]
    assert {"python", "py", "c++", "cpp"} <= set(languages["enum"])


def test_startup_line_names_version_runtimes_limits_and_layers(server: Server) -> None:
    startup = next(line for line in server.log_lines() if line.get("event") == "startup")
    assert (startup["logger"], startup["message"]) == ("adapter", "startup")
    assert re.fullmatch(r"3\.\d+\.\d+", startup["runtimes"]["python"])
    assert startup["ceilings"]["max_output_bytes"] == 4096
    assert startup["layers"]["seccomp"]["active"] is True
    assert set(startup["layers"]) >= {"per_run_uid", "landlock", "tmpfs", "netns"}


def test_access_lines_have_sizes_and_never_the_program_or_its_output(server: Server) -> None:
    marker = "only-in-the-program-7d1f"
    server.post("/python/execute?identifier=ops-1",
                {"properties": {"code": f"print('{marker}' * 2)"}})
    found = server.wait_for_log(lambda line: line.get("identifier") == "ops-1")
    assert found, "no access line for the request"
    line = found[0]
    assert (line["logger"], line["message"]) == ("adapter.access", "POST /python/execute 200")
    assert (line["method"], line["status"], line["runtime"], line["outcome"]) == (
        "POST", 200, "python", "ok")
    assert line["request_bytes"] > 0 and line["response_bytes"] > 0
    assert marker not in server.log_path.read_text()


def test_the_status_names_each_runtimes_source_file_and_suffixes(server: Server) -> None:
    """What a client needs to tell a file's language, read from the runtimes' TOML."""
    with server.client() as client:
        runtimes = {r["language"]: r for r in client.get("/").json()["runtimes"]}
    assert (runtimes["python"]["sourceFile"], runtimes["python"]["extensions"]) == (
        "main.py", [".py"])
    assert (runtimes["c++"]["sourceFile"], runtimes["c++"]["extensions"]) == (
        "main.cpp", [".cpp", ".cc", ".cxx", ".c++", ".C"])


def test_python_runs_come_from_the_warm_interpreter_unless_it_is_turned_off(
        server: Server) -> None:
    """The pass of the suite decides (scripts/test): SANDBOX_WARM_PYTHON=false starts each
    Python run afresh, and GET / says so."""
    warm = WARM_PASS
    with server.client() as client:
        runtimes = {r["language"]: r for r in client.get("/").json()["runtimes"]}
        probe = "import inspect, sys\nprint(len(inspect.stack()) > 1, 'json' in sys.modules)"
        reply = client.post("/python/execute", json={"properties": {"code": probe}}).json()
    python = runtimes["python"]["warmInterpreter"]
    assert runtimes["c++"]["warmInterpreter"] is None
    if warm:
        assert python["active"] is True and "json" in python["preload"]
        assert python["starts"] == 1
    else:
        assert python == {"active": False, "detail": "turned off by configuration"}
    assert reply["properties"]["stdout"] == f"{warm} {warm}\n"
