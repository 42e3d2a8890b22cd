"""The README's and docs' Python examples run as written (in order, one namespace a file), so
an example that no longer does what it says fails here."""

import re
import shlex
from pathlib import Path

import pytest
import torch

from gsam_repro.cli import main
from gsam_repro.optim import registry

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, dedented (blocks inside list items are indented)."""
    blocks = []
    for indent, body in FENCE.findall(path.read_text()):
        blocks.append("\n".join(line[len(indent):] for line in body.splitlines()))
    return blocks


def run_blocks(path: Path, monkeypatch) -> dict:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # examples register
    torch.manual_seed(0)
    namespace: dict = {"__name__": "docs_example"}
    blocks = python_blocks(path)
    assert blocks, f"{path.name}: no python examples found"
    for number, block in enumerate(blocks, 1):
        if "cuda" in block and not torch.cuda.is_available():
            continue
        try:
            exec(compile(block, f"{path.name} example {number}", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"{path.name} example {number} failed: {type(err).__name__}: {err}\n"
                        f"{block}")
    return namespace


def test_readme_example_decays_rho_with_the_learning_rate(monkeypatch):
    namespace = run_blocks(ROOT / "README.md", monkeypatch)
    opt = namespace["opt"]
    # After 100 steps of LinearLR(1 -> 0.01) the lr is 0.001 = lr_min: rho reached rho_min.
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    assert float(opt.stats["rho"]) == pytest.approx(0.02 + 0.02 * (0.1 * 0.0199 - 0.001) / 0.099,
                                                    rel=1e-6)
    assert float(opt.stats["rho"]) < 0.0205


def test_optimizers_doc_examples_run(monkeypatch):
    namespace = run_blocks(ROOT / "docs" / "optimizers.md", monkeypatch)
    assert "signsgd" in registry._REGISTRY and "AscentSAM" in namespace


def shell_commands(path: Path) -> list[list[str]]:
    """Each `gsam-repro ...` command of a Markdown file's ```bash blocks, as argv without the
    program name (continuation lines joined, `&&` chains split, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split(" #")[0].split("&&"):
                if part.strip().startswith("gsam-repro "):
                    commands.append(shlex.split(part)[1:])
    return commands


def cheap(argv: list[str]) -> bool:
    """Commands that take seconds here: plan and status, smoke runs and what reads them."""
    if "..." in argv or "slurm" in " ".join(argv):
        return False
    if argv[0] == "sweep":
        return argv[1] in ("plan", "status") or (argv[1] == "run" and "smoke" in argv)
    return argv[0] in ("gather", "report") and argv[1].endswith("-smoke")


@pytest.mark.slow
@pytest.mark.parametrize("doc", ["README.md", "docs/sweeps.md"])
def test_cheap_shell_commands_work_as_written(doc, tmp_path, monkeypatch, capsys):
    # From a fresh folder holding the specs, as a user's checkout would; smoke runs go in-process
    # (--executor debug) instead of one process each, the same runs.
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    commands = [argv for argv in shell_commands(ROOT / doc) if cheap(argv)]
    assert commands
    for argv in commands:
        extra = ["--executor", "debug"] if argv[:2] == ["sweep", "run"] else []
        assert main([*argv, *extra]) == 0, " ".join(argv)
        capsys.readouterr()
    if doc == "README.md":  # the smoke sequence ran, gathered and reported
        assert (tmp_path / "results" / "cifar10-wrn16-8-smoke" / "report").is_dir()
