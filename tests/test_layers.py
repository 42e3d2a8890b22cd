"""The package's shape: imports only go downward through its layers, and no module grows past
MAX_LINES without saying why at its top.

Every import in gsam_repro/ is read from the source (top-level, inside functions and under
TYPE_CHECKING alike), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gsam_repro"

# Lowest first; a module may import its own layer and those below it. The package root
# (gsam_repro/__init__.py: the version) sits with the lowest.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"gsam_repro", "errors", "yamlio", "fsio"}),
    frozenset({"optim"}),
    frozenset({"models", "data"}),
    frozenset({"train"}),
    frozenset({"results"}),
    frozenset({"sweep"}),
    frozenset({"report"}),
    frozenset({"bench"}),
    frozenset({"cli", "__main__", "demo", "toy", "toy_cli", "check"}),
)
TOP = len(LAYERS) - 1
# A package's command module (`<package>/cli.py`: argument parsing and `run(args)`) wires the
# layers together for one `gsam-repro` subcommand, so it sits in the top layer: the gather
# command hands gather the sweep's job states (results/cli.py imports sweep.store), while the
# library modules of results never import the sweep.
COMMAND_MODULE = "cli"

# Known upward imports, each with its reason. Keep this short.
EXCEPTIONS = {
    # the sweep-planning benchmark times `gsam-repro sweep plan` as a user runs it, argument
    # parsing included, through the command's entry point
    ("gsam_repro.bench.sweep", "gsam_repro.cli"),
}
# Pairs the issue names explicitly (importer package, imported package): never, whatever the
# layers above say, and including the packages' command modules unless listed in WIRED.
FORBIDDEN = (("results", "sweep"), ("report", "bench"), ("train", "results"),
             ("train", "sweep"), ("train", "report"))
WIRED = {("gsam_repro.results.cli", "gsam_repro.sweep.store")}  # see COMMAND_MODULE

MAX_LINES = 500
SIZE_MARK = "# size:"  # a file over MAX_LINES starts with `# size: <why it stays one file>`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The gsam_repro modules `path` imports (`from gsam_repro import toy` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gsam_repro"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the package uses absolute ones)"
            if node.module and node.module.split(".")[0] == "gsam_repro":
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                          else node.module for a in node.names}
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 2 and parts[-1] == COMMAND_MODULE:
        return TOP
    head = parts[1] if len(parts) > 1 else parts[0]
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    raise AssertionError(f"{module}: in no layer of tests/test_layers.py; add its package")


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def edges() -> list[tuple[str, str]]:
    known = modules()
    return sorted((m, n) for m, path in known.items() for n in imports(path, known))


def test_every_module_is_in_a_layer():
    for module in modules():
        layer(module)


def test_imports_only_go_downward():
    upward = [f"{m} (layer {layer(m)}) imports {n} (layer {layer(n)})"
              for m, n in edges() if layer(n) > layer(m) and (m, n) not in EXCEPTIONS]
    assert not upward, "\n".join(upward)


def test_the_named_layers_never_import_each_other():
    bad = [f"{m} imports {n}" for m, n in edges()
           if (package(m), package(n)) in FORBIDDEN and (m, n) not in WIRED]
    assert not bad, "\n".join(bad)


def test_the_listed_exceptions_still_exist():
    # an exception nobody needs any more is removed, so the list stays honest
    assert EXCEPTIONS | WIRED <= set(edges())


def test_the_layer_check_sees_an_upward_import(tmp_path):
    # the scan itself: a lazy import of the sweep inside a train function counts
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from gsam_repro.sweep import store\n")
    found = imports(source, modules())
    assert found == {"gsam_repro.sweep.store"}
    assert layer("gsam_repro.sweep.store") > layer("gsam_repro.train.loop")


def test_no_file_is_over_the_size_limit_without_a_reason():
    over = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        lines = path.read_text().splitlines()
        if len(lines) <= MAX_LINES:
            continue
        first = lines[0] if lines else ""
        if not (first.startswith(SIZE_MARK) and len(first) > len(SIZE_MARK) + 10):
            over.append(f"{relative}: {len(lines)} lines (split it, or start it with "
                        f"'{SIZE_MARK} <why it stays one file>')")
    assert not over, "\n".join(over)
