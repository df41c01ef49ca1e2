"""docs/layout.md lists every module of the package, one line each, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def documented() -> set[str]:
    text = (ROOT / "docs" / "layout.md").read_text()
    block = text.split("```")[1]
    found, folder = set(), ""
    for line in block.splitlines():
        m = re.match(r"^(\s*)(\S+)", line)
        if not m or m.group(2) == "lazymerge/":
            continue
        name = m.group(2)
        if name.endswith("/"):
            folder = name
        elif name.endswith(".py"):
            found.add((folder if len(m.group(1)) > 2 else "") + name)
    return found


def test_layout_doc_lists_every_module_and_only_those():
    package = ROOT / "lazymerge"
    actual = {str(p.relative_to(package)) for p in package.rglob("*.py")}
    actual -= {p for p in actual if p.endswith("__init__.py") and "/" in p}  # sub-package re-exports
    doc = documented()
    assert not (actual - doc), f"modules missing from docs/layout.md: {sorted(actual - doc)}"
    assert not (doc - actual), f"docs/layout.md lists modules that do not exist: {sorted(doc - actual)}"
