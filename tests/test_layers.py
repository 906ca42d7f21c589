"""Which module may import which: offline evaluation does not depend on the online detector, and the
detector does not depend on the server built on it. Checked in the source (lazy imports inside functions
count too), so the rule holds whatever was imported before."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dualvad

ROOT = Path(dualvad.__file__).parent


def imported_modules(module: str) -> set[str]:
    """Every ``dualvad...`` module the source of ``module`` names in an import statement, at any depth."""
    tree = ast.parse((ROOT / (module.removeprefix("dualvad.").replace(".", "/") + ".py")).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("dualvad")}


@pytest.mark.parametrize(("module", "forbidden"), [
    ("dualvad.pipeline.evaluate", "dualvad.detector"),
    ("dualvad.detector", "dualvad.serve"),
    ("dualvad.detector_schema", "dualvad.serve"),
    ("dualvad.detect", "dualvad.serve"),
])
def test_a_lower_module_does_not_import_a_higher_one(module, forbidden):
    found = sorted(name for name in imported_modules(module)
                   if name == forbidden or name.startswith(forbidden + "."))
    assert not found, f"{module} imports {found}"
