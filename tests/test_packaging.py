"""The package installs as documented: metadata, conda file and entry points agree."""

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", req.strip())
        if match and not req.strip().startswith("-"):
            out[match.group(1).lower()] = match.group(2).strip()
    return out


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    extras = project["optional-dependencies"]
    assert _names(pip_section) == _names(
        [*project["dependencies"], *extras["suite"], *extras["tensorboard"]])
    assert "-e .[suite,tensorboard,dev]" in pip_section


def test_core_install_is_torch_and_the_suite_an_extra_that_declares_numpy():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert list(_names(project["dependencies"])) == ["torch"]
    suite = _names(project["optional-dependencies"]["suite"])
    assert {"numpy", "pyyaml", "pandas", "submitit", "timm", "matplotlib", "scipy",
            "scikit-learn"} <= suite.keys()
    makefile = (ROOT / "Makefile").read_text()
    assert "-e '.[suite,tensorboard,dev]'" in makefile


def torch_alone(folder: Path) -> Path:
    """A folder holding links to torch, the distributions it requires, and gsam_repro: with
    `python -I -S` and only this folder on sys.path, the environment `pip install gsam-repro`
    makes, without a new virtual environment."""
    seen, todo = set(), ["torch"]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional or other-platform requirement
        seen.add(name)
        todo += [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in dist.requires or []
                 if "extra ==" not in r]
        for file in dist.files or []:
            top = file.parts[0]
            target = folder / top
            if top.endswith((".dist-info", ".data")) or top == ".." or target.exists():
                continue
            target.symlink_to(Path(dist.locate_file(top)).resolve())
    (folder / "gsam_repro").symlink_to(ROOT / "gsam_repro")
    return folder


STEP_WITH_TORCH_ALONE = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
warnings.simplefilter("ignore")  # torch warns once that numpy is missing
import torch
from gsam_repro.optim import create_optimizer
model = torch.nn.Linear(3, 2)
opt = create_optimizer("gsam", model.parameters(), lr=0.1, rho_max=0.05, rho_min=0.01,
                       lr_min=0.001, alpha=0.1, model=model)
x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
def closure():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss
opt.step(closure)
suite = {"numpy", "yaml", "pandas", "pyarrow", "matplotlib", "submitit", "timm", "torchvision",
         "tqdm", "sklearn", "scipy", "tensorboard"}
for name in sorted(suite):
    try:
        __import__(name)
        print("importable:", name)
    except ImportError:
        pass
print("step done, h =", float(opt.stats["h"]) == float(opt.stats["h"]))
"""


@pytest.mark.slow
def test_optimizers_import_and_step_with_torch_alone(tmp_path):
    folder = torch_alone(tmp_path)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", STEP_WITH_TORCH_ALONE, str(folder)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # none of the suite's packages could be imported, yet the optimizer stepped
    assert out.stdout.strip() == "step done, h = True"


def test_torch_metadata_accepts_a_range_not_a_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = _names(project["dependencies"])["torch"]
    assert spec.startswith(">=") and "==" not in spec


def test_module_and_console_script_print_help():
    out = subprocess.run([sys.executable, "-m", "gsam_repro", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("train", "sweep", "gather", "report", "toy", "bench", "demo"):
        assert command in out
    script = Path(sys.executable).parent / "gsam-repro"
    assert subprocess.run([str(script), "--help"], capture_output=True).returncode == 0


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_suite_modules_are_the_suite_extras_import_names():
    from gsam_repro.cli import SUITE_MODULES

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    import_name = {"pyyaml": "yaml", "scikit-learn": "sklearn"}  # where the two names differ
    suite = _names(project["optional-dependencies"]["suite"])
    assert SUITE_MODULES == {import_name.get(n, n) for n in suite}


COMMAND_WITH_TORCH_ALONE = """
import sys
sys.path.insert(0, sys.argv[1])
from gsam_repro.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_command_without_the_suite_says_which_extra_to_install(tmp_path):
    (tmp_path / "site").mkdir()
    folder = torch_alone(tmp_path / "site")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", COMMAND_WITH_TORCH_ALONE,
                          str(folder), "sweep", "status", "spec.yaml"], capture_output=True,
                         text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "pip install 'gsam-repro[suite]'" in out.stderr
    assert out.stderr.startswith("gsam-repro: error: the command needs the suite's packages (")
