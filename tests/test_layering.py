"""The packages keep their places: the floor service never imports the simulator or the harness,
the simulator never imports a controller driver, and the shared definitions import neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "control": ("plc_sim", "harness", "benchmarks", "sortctl"),
    "plant": ("control", "plc_sim", "harness", "vision", "benchmarks", "sortctl"),
    "vision": ("control", "plc_sim", "harness", "benchmarks", "sortctl"),
    "plc_sim": ("control.plc", "control.service", "harness", "benchmarks", "sortctl"),
}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_in_their_layer(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert bad == []
