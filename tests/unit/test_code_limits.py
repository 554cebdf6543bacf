"""The size limits that keep the package readable: no module over 500 lines, no class over 300,
no function over 80. A unit that outgrows them is split by role, not squeezed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO as ROOT

PACKAGE = ROOT / "airflow_provider_pdr"
MODULE_LINES, CLASS_LINES, FUNCTION_LINES = 500, 300, 80


def sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "bench").rglob("*.py")])


def oversized(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    if len(text.splitlines()) > MODULE_LINES:
        found.append(f"module: {len(text.splitlines())} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            limit, kind = CLASS_LINES, "class"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit, kind = FUNCTION_LINES, "function"
        else:
            continue
        lines = node.end_lineno - node.lineno + 1
        if lines > limit:
            found.append(f"{kind} {node.name} (line {node.lineno}): {lines} lines, limit {limit}")
    return found


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_within_size_limits(path):
    assert oversized(path) == []
