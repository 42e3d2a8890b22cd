"""The package installs as documented: metadata, conda file and entry points agree."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

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
    assert _names(pip_section) == _names(project["dependencies"])


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
