"""AutoGen's Azure Container Apps code executor (autogen-ext's ACADynamicSessionsCodeExecutor),
unchanged, with the service's URL as its pool management endpoint: it sends POST /code/execute,
POST /files/upload, GET /files and GET /files/content/{name} with api-version
2024-02-02-preview, a token from its credential as a bearer header (never checked here: the
pool does that), and lists the session's packages with a cell of its own."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock
from autogen_ext.code_executors.azure import ACADynamicSessionsCodeExecutor

from ..utils import Server


class Token:
    token = "not-checked"
    expires_on = 2**31


class Credential:
    """What azure.identity's credentials offer the executor: get_token(scope)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Token:
        return Token()


def executor(server: Server, work_dir: Path) -> ACADynamicSessionsCodeExecutor:
    return ACADynamicSessionsCodeExecutor(
        pool_management_endpoint=server.url, credential=Credential(), work_dir=work_dir,
        session_id=f"autogen-{secrets.token_hex(4)}")


def end(server: Server, aca: ACADynamicSessionsCodeExecutor) -> None:
    with server.client() as client:
        client.delete("/session", params={"identifier": aca._session_id})


def test_code_blocks_run_with_state_and_files_round_trip(server: Server, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,2\n3,4\n")
    aca = executor(server, tmp_path)

    async def go() -> tuple[Any, Any, Any]:
        token = CancellationToken()
        await aca.start()
        await aca.upload_files(["in.csv"], token)
        first = await aca.execute_code_blocks([CodeBlock(
            "import pandas as pd\ntotal = int(pd.read_csv('/mnt/data/in.csv').to_numpy().sum())",
            "python")], token)
        second = await aca.execute_code_blocks([CodeBlock(
            "print(total)\nopen('out.txt', 'w').write(str(total * 2))", "python")], token)
        downloaded = await aca.download_files(["out.txt"], token)
        await aca.stop()
        return first, second, downloaded

    try:
        first, second, downloaded = asyncio.run(go())
    finally:
        end(server, aca)
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert second.output.startswith("10\n")
    assert downloaded == [str(tmp_path / "out.txt")]
    assert (tmp_path / "out.txt").read_text() == "20"


def test_a_failing_block_is_a_non_zero_exit(server: Server, tmp_path: Path) -> None:
    aca = executor(server, tmp_path)

    async def go() -> Any:
        await aca.start()
        return await aca.execute_code_blocks([CodeBlock("1 / 0", "python")],
                                             CancellationToken())
    try:
        result = asyncio.run(go())
    finally:
        end(server, aca)
    assert result.exit_code == 1 and "ZeroDivisionError" in result.output


@pytest.mark.xfail(reason="the executor parses str(result) split at ',\\n', IPython's text "
                   "of a long list; the service returns a cell's result as a JSON value")
def test_the_package_listing_names_the_installed_packages(server: Server,
                                                          tmp_path: Path) -> None:
    aca = executor(server, tmp_path)

    async def go() -> set[str]:
        aca._ensure_access_token()
        return await aca.get_available_packages(CancellationToken())
    try:
        packages = asyncio.run(go())
    finally:
        end(server, aca)
    assert {"numpy", "pandas", "matplotlib"} <= packages
