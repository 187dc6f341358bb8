"""Import contract: the core and the reports never import the engine that calls them.

Read from the source (every import statement, also those under `if TYPE_CHECKING:`), so that
an arrow the wrong way fails here instead of waiting for a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "peergrid"

#: package -> packages it must not import
FORBIDDEN = {
    "metrics": ("peergrid.engine", "peergrid.report", "peergrid.cli"),
    "network": ("peergrid.engine", "peergrid.report", "peergrid.cli"),
    "report": ("peergrid.engine", "peergrid.cli"),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upwards(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files
    wrong = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in files
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package])
    ]
    assert not wrong, wrong
