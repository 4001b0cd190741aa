"""Sessions as agents use them: IPython's magics and shell escapes, the scientific stack, plots
as images, and shell sessions (`shellCommand`), through the real service and, where one exists,
the real client (LangChain's SessionsPythonREPLTool and SessionsBashTool)."""

from __future__ import annotations

import base64
import json
import secrets
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ..utils import Server, assert_nothing_left
from .test_sessions import NEWER, Session, sessions_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_azure_dynamic_sessions import SessionsBashTool, SessionsPythonREPLTool

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STACK = ("numpy", "pandas", "matplotlib", "scipy", "sklearn", "sympy", "IPython")
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.show()"


@pytest.fixture
def new_session(server: Server) -> Iterator[Callable[..., Session]]:
    with sessions_of(server) as make:
        yield make


def is_png_image(value: Any) -> bool:
    """Azure's image result: {"type": "image", "format": "png", "base64_data": …}."""
    return (isinstance(value, dict) and value.get("type") == "image"
            and value.get("format") == "png"
            and base64.b64decode(value["base64_data"]).startswith(PNG_SIGNATURE))


def test_magics_work(new_session: Callable[..., Session]) -> None:
    session = new_session()
    props = session.execute("%timeit -n 3 -r 2 sum(range(100))")
    assert props["status"] == "Success" and "per loop" in props["stdout"], props
    props = session.execute("%%writefile notes.txt\nwritten by a cell magic\n")
    assert (props["status"], props["stdout"]) == ("Success", "Writing notes.txt\n")
    assert session.content("notes.txt").content == b"written by a cell magic\n"
    listed = session.execute("%pip list")
    assert listed["status"] == "Success"
    names = {line.split()[0].lower() for line in listed["stdout"].splitlines() if line}
    assert {"numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "sympy"} <= names


def test_pip_install_says_there_is_no_network(new_session: Callable[..., Session]) -> None:
    session = new_session()
    for cell in ("%pip install requests", "!pip install requests",
                 "!python3 -m pip install requests"):
        props = session.execute(cell)
        assert "this session has no network access" in props["stderr"], (cell, props)
    assert session.execute("%pip install requests")["status"] == "Failure"


def test_shell_escapes_run_in_the_session(new_session: Callable[..., Session]) -> None:
    session = new_session()
    session.upload("data.csv", b"a,b\n1,2\n")
    props = session.execute("!ls\nfiles = !ls\nfiles")
    assert (props["status"], props["stdout"], props["result"]) == (
        "Success", "data.csv\n", ["data.csv"])
    # The escape runs as the kernel does: its uid, its working directory, its confinement.
    props = session.execute("import os\nuid = os.getuid()\n!id -u\nuid")
    assert props["stdout"] == f"{props['result']}\n"
    props = session.execute("!cat /etc/shadow")
    assert "Permission denied" in props["stdout"] + props["stderr"]


def test_tracebacks_go_to_stderr_and_the_last_value_is_the_result(
        new_session: Callable[..., Session]) -> None:
    session = new_session()
    props = session.execute("import numpy as np\nnp.arange(4).sum()")
    assert (props["status"], props["result"], props["stdout"]) == ("Success", 6, "")
    props = session.execute("undefined_name")
    assert (props["status"], props["stdout"]) == ("Failure", "")
    assert props["stderr"].endswith("NameError: name 'undefined_name' is not defined\n")


def test_the_scientific_stack_imports_in_sessions_and_runs(server: Server,
                                                           new_session: Callable[..., Session]
                                                           ) -> None:
    code = ("import importlib\n"
            f"[importlib.import_module(m).__name__ for m in {list(STACK)!r}]")
    session = new_session()
    assert session.result(code) == list(STACK)
    # What AutoGen's package listing reads (pkg_resources) shows them too.
    listed = session.result("import pkg_resources\n"
                            "sorted(d.project_name.lower() for d in pkg_resources.working_set)")
    assert {"numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "sympy"} <= set(listed)
    # A plain run too, under a run's default limits (one BLAS thread: the process limit).
    script = ("import numpy, pandas, scipy.linalg, sklearn.linear_model, sympy\n"
              "import matplotlib.pyplot as plt\n"
              "print(int(numpy.linalg.det(numpy.eye(3))), pandas.Series([1, 2]).sum(),\n"
              "      sympy.Integer(2) ** 10)\n")
    response = server.post("/python/execute", {"properties": {"code": script}})
    assert response.status_code == 200, response.text
    props = response.json()["properties"]
    assert (props["outcome"], props["stdout"]) == ("ok", "1 3 1024\n"), props


def test_pandas_in_a_session(new_session: Callable[..., Session]) -> None:
    session = new_session()
    props = session.execute("import pandas as pd\n"
                            "df = pd.DataFrame({'a': [1, 2], 'b': [3.5, 4.5]})\n"
                            "df.sum().to_dict()")
    assert (props["status"], props["result"]) == ("Success", {"a": 3, "b": 8.0})


def execute(session: Session, code: str) -> dict[str, Any]:
    """The reply's properties, which may carry `images` (Session.execute expects none)."""
    response = session.execute_response(code)
    assert response.status_code == 200, response.text
    props: dict[str, Any] = response.json()["properties"]
    return props


def test_a_plot_is_an_image_result(new_session: Callable[..., Session]) -> None:
    session = new_session()
    props = execute(session, PLOT)
    assert props["status"] == "Success", props
    assert is_png_image(props["result"]) and props["images"] == [props["result"]]
    # A figure as the last value is the result too; figures are closed after their cell.
    props = execute(session, "fig, ax = plt.subplots()\nax.bar([1, 2], [3, 4])\nfig")
    assert is_png_image(props["result"]) and len(props["images"]) == 1
    assert session.result("len(plt.get_fignums())") == 0
    # display() of anything with a PNG repr adds an image; the last value stays the result.
    props = execute(
        session, "from IPython.display import display, Image\n"
        "fig2, ax2 = plt.subplots()\nax2.plot([0, 1])\n"
        "import io\nbuf = io.BytesIO()\nfig2.savefig(buf, format='png')\nplt.close(fig2)\n"
        "display(Image(data=buf.getvalue()))\n"
        "plt.figure()\nplt.plot([2, 1])\n'done'")
    assert props["result"] == "done" and len(props["images"]) == 2
    assert all(is_png_image(image) for image in props["images"])
    # No image: no images field, as before.
    assert "images" not in execute(session, "1 + 1")


def test_the_newer_family_carries_images_in_the_execution(new_session: Callable[..., Session]
                                                          ) -> None:
    session = new_session()
    response = session.execution_response(PLOT)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert is_png_image(result["executionResult"]) and len(result["images"]) == 1


def test_langchain_gets_the_image_and_the_model_does_not(server: Server) -> None:
    tool = SessionsPythonREPLTool(pool_management_endpoint=server.url,
                                  access_token_provider=lambda: "not-checked",
                                  session_id=f"plots-{secrets.token_hex(4)}")
    try:
        content, artifact = tool._run(PLOT)
        shown = json.loads(content)
        # The tool strips the base64 data from what the model reads and keeps the rest.
        assert shown["result"] == {"type": "image", "format": "png"}
        assert is_png_image(artifact["result"])
        assert json.loads(tool.invoke("import pandas as pd\npd.Series([1, 2]).sum()")) == {
            "result": 3, "stdout": "", "stderr": ""}
    finally:
        tool.close()
    assert_nothing_left(server)


# ---- shell sessions ----------------------------------------------------------------------------

def shell(server: Server, identifier: str, command: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/executions",
                          params={"identifier": identifier, "api-version": NEWER},
                          json={"shellCommand": command}, timeout=60)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    return execution


def test_shell_commands_keep_their_state(server: Server) -> None:
    identifier = f"shell-{secrets.token_hex(4)}"
    first = shell(server, identifier, "export X=41; mkdir work; cd work; echo here > f.txt; pwd")
    assert (first["status"], first["result"]["exitCode"]) == ("0", 0)
    assert first["result"]["stdout"].endswith("/work\n")
    second = shell(server, identifier, "echo $((X + 1)); cat f.txt; ls ..")
    assert second["result"] == {"stdout": "42\nhere\nwork\n", "stderr": "", "exitCode": 0,
                                "executionTimeInMilliseconds":
                                    second["result"]["executionTimeInMilliseconds"]}
    failed = shell(server, identifier, "echo oops >&2; exit 3")
    assert (failed["status"], failed["result"]["stderr"], failed["result"]["exitCode"]) == (
        "3", "oops\n", 3)
    # The session's Python cells and its shell share one folder.
    response = httpx.post(f"{server.url}/executions",
                          params={"identifier": identifier, "api-version": NEWER},
                          json={"code": "open('work/f.txt').read()"}, timeout=60)
    assert response.json()["result"]["executionResult"] == "here\n"
    httpx.delete(f"{server.url}/session", params={"identifier": identifier,
                                                  "api-version": NEWER}, timeout=60)
    assert_nothing_left(server)


def test_langchain_bash_tool(server: Server) -> None:
    tool = SessionsBashTool(pool_management_endpoint=server.url,
                            access_token_provider=lambda: "not-checked",
                            session_id=f"bash-{secrets.token_hex(4)}")
    try:
        assert json.loads(tool.invoke("export X=1")) == {"stdout": "", "stderr": "",
                                                         "exitCode": 0}
        assert json.loads(tool.invoke("echo $X; ls")) == {"stdout": "1\n", "stderr": "",
                                                          "exitCode": 0}
        failed = json.loads(tool.invoke("ls /no/such/folder"))
        assert failed["exitCode"] == 2 and "No such file" in failed["stderr"]
        # The network is as closed to the shell as to programs.
        closed = json.loads(tool.invoke("exec 3<>/dev/tcp/127.0.0.1/80 && echo open"))
        assert closed["exitCode"] != 0 and closed["stdout"] == ""
    finally:
        tool.delete_session()
    assert_nothing_left(server)


# ---- hostile cells -----------------------------------------------------------------------------

def test_shell_escapes_have_no_network(new_session: Callable[..., Session]) -> None:
    session = new_session()
    props = execute(session, "!bash -c 'exec 3<>/dev/tcp/127.0.0.1/80 && echo connected'\n"
                             "_exit_code")
    assert props["status"] == "Success" and props["result"] != 0
    assert "connected" not in props["stdout"]
    props = execute(session, "import socket\n"
                             "try:\n    socket.create_connection(('127.0.0.1', 80), 2)\n"
                             "    r = 'connected'\n"
                             "except OSError as e:\n    r = type(e).__name__\nr")
    assert props["result"] in ("PermissionError", "OSError", "ConnectionRefusedError"), props
    assert props["result"] != "connected"


def test_a_session_cannot_reach_another_sessions_files(new_session: Callable[..., Session]
                                                        ) -> None:
    owner, other = new_session(), new_session()
    owner.upload("secret.txt", b"the owner's")
    folder = owner.result("import os\nos.getcwd()")
    for cell in (f"open({folder + '/secret.txt'!r}).read()",
                 f"!cat {folder}/secret.txt",
                 f"import os\nos.listdir({folder!r})"):
        props = execute(other, cell)
        assert "the owner's" not in json.dumps(props), (cell, props)
        assert "secret.txt" not in json.dumps(props["result"]), (cell, props)
    assert owner.content("secret.txt").content == b"the owner's"


@pytest.mark.root
def test_a_fork_bomb_from_a_shell_escape_resets_only_its_session(
        server: Server, new_session: Callable[..., Session]) -> None:
    # Only as root: the session's own uid and RLIMIT_NPROC bound the bomb.
    bystander = new_session()
    bystander.execute("y = 2")
    session = new_session()
    props = execute(session, "!bash -c ':(){ :|:& };:'")
    # The escape's bash returns at once (the bomb runs in the background, bounded by the
    # session's process limit); its processes are the session's own, gone with it (the
    # fixture checks that nothing is left); the service keeps answering, and another session
    # keeps its state.
    assert props["status"] == "Success", props
    assert bystander.result("y") == 2
    session.end()
    response = server.post("/python/execute", {"properties": {"code": "print('still here')"}})
    assert response.json()["properties"]["stdout"] == "still here\n"


def test_llamaindex_saves_the_plot_it_gets_back(server: Server, tmp_path: Any) -> None:
    from llama_index.tools.azure_code_interpreter import AzureCodeInterpreterToolSpec

    spec = AzureCodeInterpreterToolSpec(pool_management_endpoint=server.url,
                                        session_id=f"llama-{secrets.token_hex(4)}",
                                        local_save_path=str(tmp_path))
    spec.access_token_provider = lambda: "not-checked"  # the service checks no token
    reply = spec.code_interpreter(PLOT)
    assert reply["properties"]["result"] == {"type": "image", "format": "png",
                                             "saved_to_local_path": True}
    [saved] = list(tmp_path.iterdir())
    assert saved.read_bytes().startswith(PNG_SIGNATURE)
    listed = spec.code_interpreter("import importlib.metadata\n"
                                   "sorted(d.metadata['Name'].lower() for d in "
                                   "importlib.metadata.distributions())")
    # What AutoGen's and others' package listings read: the stack is there.
    assert {"numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "sympy"} <= set(
        listed["properties"]["result"])
    httpx.delete(f"{server.url}/session", params={"identifier": spec.session_id}, timeout=60)
    assert_nothing_left(server)


def test_the_status_lists_the_installed_libraries(server: Server) -> None:
    with server.client() as client:
        runtimes = {entry["language"]: entry for entry in client.get("/").json()["runtimes"]}
    libraries = runtimes["python"]["libraries"]
    assert {"numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "sympy",
            "ipython"} <= set(libraries)
    assert all(version[0].isdigit() for version in libraries.values()), libraries
    assert runtimes["c++"]["libraries"] == {}
