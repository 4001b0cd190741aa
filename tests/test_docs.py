"""The documents stay true to the code: every setting is in the settings table, every link
between the documents leads somewhere."""

from __future__ import annotations

import dataclasses
import re

from adapter import Settings

from .utils import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_setting_is_documented() -> None:
    table = (REPO / "docs" / "operating.md").read_text()
    names = [field.name.upper() if field.name in ("host", "port") else
             "SANDBOX_" + field.name.upper() for field in dataclasses.fields(Settings)]
    assert [name for name in names if f"`{name}`" not in table] == []


def test_links_between_documents_lead_somewhere() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", document.read_text()):
            if not (document.parent / target).is_file():
                broken.append(f"{document.relative_to(REPO)} -> {target}")
    assert broken == []


def test_the_readme_is_the_front_door() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    assert "scripts/serve" in readme and "scripts/test" in readme
