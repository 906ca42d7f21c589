"""The house's floors (DESIGN.md, Layout): every arrow points down, only the top floor imports Ray, and no two
modules or packages import each other, read from the source (every import, those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dualvad"

#: Each module's floor, by the longest matching name; a module may import its own floor and those below.
FLOORS = {
    # 0: the base: errors, validation, the run layout, table schemas, storage, the stage list
    "dualvad": 0, "dualvad.errors": 0, "dualvad.validation": 0, "dualvad.paths": 0, "dualvad.schema": 0,
    "dualvad.storage": 0, "dualvad.stages.registry": 0,
    # 1: the run directory and its records, corpora, video, the console and tracking
    "dualvad.rundir": 1, "dualvad.runlock": 1, "dualvad.runpublish": 1, "dualvad.stages": 1,
    "dualvad.corpus": 1, "dualvad.video": 1, "dualvad.tracking": 1, "dualvad.console": 1,
    # 2: the models and the measures (plain PyTorch / NumPy)
    "dualvad.scorer": 2, "dualvad.benchmarks": 2, "dualvad.vlm": 2, "dualvad.eval": 2,
    # 3: the whole config, the online detector and its command, the stream detector beside it
    "dualvad.config": 3, "dualvad.detector": 3, "dualvad.detector_schema": 3, "dualvad.batch_detect": 3,
    "dualvad.detection": 3, "dualvad.stream": 3,
    # 4: Ray: the stages' distributed work, training, serving, the CLI
    "dualvad.pipeline": 4, "dualvad.train": 4, "dualvad.serve": 4, "dualvad.cli": 4, "dualvad.commands": 4,
}
RAY_FLOOR = 4


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """``dualvad.x.y`` -> its file, for every module of the package."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, modules: set[str]) -> tuple[set[str], bool]:
    """The package modules that module ``name`` imports (the longest known prefix of each import) and
    whether it imports Ray."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found, ray = set(), False
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            ray = ray or target == "ray" or target.startswith("ray.")
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found, ray


def floor_of(name: str) -> int:
    """The floor of module ``name`` (its longest prefix in FLOORS)."""
    prefix = name
    while prefix not in FLOORS:
        if "." not in prefix:
            raise KeyError(f"{name} has no floor: add it (or its package) to FLOORS in {__file__}")
        prefix = prefix.rpartition(".")[0]
    return FLOORS[prefix]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _top(name: str) -> str:
    """The package (or top-level module) of ``name``: ``dualvad.x``."""
    return ".".join(name.split(".")[:2])


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, set[str]], set[str]]:
    modules = module_names()
    edges, ray_users = {}, set()
    for name, path in modules.items():
        edges[name], ray = imports_of(name, path, set(modules))
        if ray:
            ray_users.add(name)
    return edges, ray_users


def test_every_module_has_a_floor(graph):
    edges, _ = graph
    for name in edges:
        floor_of(name)


def test_no_module_imports_one_above_it(graph):
    edges, _ = graph
    upward = [f"{a} (floor {floor_of(a)}) imports {b} (floor {floor_of(b)})"
              for a, targets in edges.items() for b in sorted(targets) if floor_of(b) > floor_of(a)]
    assert not upward, "\n".join(upward)


def test_only_the_top_floor_imports_ray(graph):
    _, ray_users = graph
    below = sorted(name for name in ray_users if floor_of(name) < RAY_FLOOR)
    assert not below, f"these modules import Ray below its floor: {below}"


def test_no_two_modules_or_packages_import_each_other(graph):
    edges, _ = graph
    assert cycles(edges) == []
    packages: dict[str, set[str]] = {}
    for a, targets in edges.items():
        packages.setdefault(_top(a), set()).update(_top(b) for b in targets if _top(b) != _top(a))
    assert cycles(packages) == []


def test_offline_evaluation_does_not_import_the_online_detector(graph):
    edges, _ = graph
    assert "dualvad.detector" not in edges["dualvad.pipeline.evaluate"]


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checker itself: a made-up package with an upward import, a cycle and a Ray import is caught."""
    package = tmp_path / "dualvad"
    (package / "scorer").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "scorer" / "__init__.py").write_text("")
    (package / "scorer" / "model.py").write_text("import ray\nfrom ..cli import main\n")
    (package / "cli.py").write_text("def main():\n    from dualvad.scorer.model import x\n")
    modules = module_names(package)
    assert set(modules) == {"dualvad", "dualvad.scorer", "dualvad.scorer.model", "dualvad.cli"}
    edges = {name: imports_of(name, path, set(modules))[0] for name, path in modules.items()}
    assert edges["dualvad.scorer.model"] == {"dualvad.cli"}
    assert imports_of("dualvad.scorer.model", modules["dualvad.scorer.model"], set(modules))[1]
    assert floor_of("dualvad.scorer.model") < floor_of("dualvad.cli")  # so the arrow is upward
    assert cycles(edges) == [["dualvad.cli", "dualvad.scorer.model"]]
    with pytest.raises(KeyError, match="has no floor"):
        floor_of("elsewhere.module")
