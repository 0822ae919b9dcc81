"""The house keeps its shape: imports flow one way through the layers, with no cycle;
migrations import no application code; modules and functions stay small.

The import graph is read from the source with ``ast``, counting imports inside
functions and under ``TYPE_CHECKING``: a cycle hidden there is still a cycle to a
reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mailflow"

# The layers, lowest first: a module may import its own layer and the layers before it.
# The stages of the flow are layered so that each imports only the stages after it
# (intake -> pipeline -> the committee's domain -> outbound), never one before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("mailflow", "mailflow.config", "mailflow.configfile", "mailflow.filecache",
              "mailflow.tomlfile", "mailflow.timestamps", "mailflow.resources",
              "mailflow.logs", "mailflow.sections", "mailflow.imapsettings",
              "mailflow.rules", "mailflow.progress", "mailflow.wakeups")),
    ("mail", ("mailflow.mail",)),
    ("store", ("mailflow.store",)),
    ("outbound", ("mailflow.outbound",)),
    ("pipeline context", ("mailflow.pipeline", "mailflow.pipeline.context")),
    ("commands", ("mailflow.commands",)),
    ("domain", ("mailflow.case", "mailflow.responses", "mailflow.clocks")),
    ("pipeline", ("mailflow.pipeline.runner", "mailflow.pipeline.handlers")),
    ("intake", ("mailflow.intake",)),
    ("archive", ("mailflow.archive",)),
    ("entry points", ("mailflow.app", "mailflow.testing", "mailflow.cli", "mailflow.__main__")),
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The mailflow modules ``name`` imports, anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from package import module` imports the module, not the package.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def layer(name: str) -> int:
    best = (-1, -1)
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or (name.startswith(prefix + ".") and prefix != "mailflow"):
                best = max(best, (len(prefix), rank))
    assert best[1] >= 0, f"{name} is in no layer: add it to LAYERS"
    return best[1]


def test_every_module_is_in_a_layer_and_imports_only_its_own_layer_or_lower():
    wrong = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
             for a, deps in GRAPH.items() for b in deps if layer(b) > layer(a)]
    assert wrong == []


def test_there_is_no_import_cycle():
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                cycles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_layer_check_would_catch_an_upward_import():
    # The check above must be able to fail: the store importing the pipeline would.
    assert layer("mailflow.store.db") < layer("mailflow.pipeline.runner")
    assert layer("mailflow.pipeline.context") < layer("mailflow.case.cases")
    assert layer("mailflow.case.cases") < layer("mailflow.pipeline.handlers.route")


def test_migrations_import_no_application_code():
    steps = [n for n in MODULES if n.startswith("mailflow.store.migrations.")]
    assert steps, "no migration modules found"
    for name in steps:
        assert GRAPH[name] == set(), f"{name} imports {GRAPH[name]}: a step must be frozen"
    runner = GRAPH["mailflow.store.migrations"]
    assert runner <= set(steps), f"the migrations runner imports {runner - set(steps)}"


def test_modules_and_functions_stay_small():
    long_modules = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: c for n, c in long_modules.items() if c > MAX_MODULE_LINES} == {}
    long_functions = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {lines} lines")
    assert long_functions == []


def test_no_module_registers_itself_or_finds_another_by_name():
    # importlib and sys.modules are how parts found each other by string; the
    # registry (mailflow.app) lists them instead.
    offenders = []
    for name, path in MODULES.items():
        source = path.read_text()
        for needle in ("import_module(", "sys.modules", "__import__("):
            if needle in source:
                offenders.append(f"{name}: {needle}")
    assert offenders == []
