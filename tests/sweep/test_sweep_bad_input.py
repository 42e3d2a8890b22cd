"""Bad specs: exit code 2, one message naming the YAML key path and its line, nothing written."""

from __future__ import annotations

import pytest
from sweep_testkit import cli, write_spec

# (spec body after the tiny base, text on the offending line, key path, message, extra args)
CASES = {
    "unknown top-level key": (
        "gird:\n  optimizer.lr: [0.1]\n", "gird:", "gird", "did you mean grid?", []),
    "config section at the top": (
        "optimizer: {lr: 0.1}\n", "optimizer: {lr: 0.1}", "optimizer", "go under base:", []),
    "unknown config key in the base": (
        "", "optimizer: {lr: 0.05", "base.optimizer.momentun", "did you mean optimizer.momentum?",
        ["-o", "base.optimizer.momentun=0.9"]),
    "unknown config key as an axis": (
        "grid:\n  optimizer.rhoo: [0.1]\n", "optimizer.rhoo", "grid.optimizer.rhoo",
        "did you mean optimizer.rho?", []),
    "unknown config key in a mapping variant": (
        "grid:\n  optimizer:\n    - {name: sgd}\n    - {name: sam, rhoo: 0.1}\n", "rhoo",
        "grid.optimizer[1].rhoo", "did you mean optimizer.rho?", []),
    "wrong type of an axis value": (
        "grid:\n  optimizer.lr:\n    - 0.1\n    - fast\n", "- fast", "grid.optimizer.lr[1]",
        "expected a number", []),
    "axis that is not a list": (
        "grid:\n  optimizer.lr: 0.1\n", "optimizer.lr: 0.1", "grid.optimizer.lr",
        "expected a list", []),
    "wrong type of seeds": ("seeds: many\n", "seeds:", "seeds", "count or a list", []),
    "value out of range": (
        "grid:\n  schedule.epochs: [1, 0]\n", "schedule.epochs", "grid.schedule.epochs[1]",
        "must be >= 1", []),
    "empty axis": ("grid:\n  optimizer.lr: []\n", "optimizer.lr", "grid.optimizer.lr",
                   "empty axis", []),
    "zip axes of different lengths": (
        "zip:\n  optimizer.rho_max: [0.05, 0.1]\n  optimizer.alpha: [0.1, 0.2, 0.3]\n",
        "optimizer.alpha", "zip.optimizer.alpha", "optimizer.rho_max has 2", []),
    "exclude naming a key no axis has": (
        "grid:\n  optimizer.lr: [0.1, 0.2]\nexclude:\n  - {optimizer.alpha: 0.1}\n",
        "optimizer.alpha", "exclude[0].optimizer.alpha", "no axis varies", []),
    "include naming a key no axis has": (
        "grid:\n  optimizer.lr: [0.1, 0.2]\ninclude:\n  - {schedule.epochs: 3}\n",
        "schedule.epochs", "include[0].schedule.epochs", "no axis varies", []),
    "exclude with a misspelt key under a mapping axis": (
        "grid:\n  optimizer:\n    - {name: sgd}\n    - {name: sam, rho: 0.05}\n"
        "exclude:\n  - {optimizer.nme: sgd}\n", "optimizer.nme", "exclude[0].optimizer.nme",
        "unknown config key; did you mean optimizer.name?", []),
    "include with a misspelt nested key": (
        "grid:\n  optimizer:\n    - {name: sgd}\n    - {name: sam, rho: 0.05}\n"
        "include:\n  - {optimizer: {name: gsam, rho_mx: 0.1}}\n", "rho_mx",
        "include[0].optimizer.rho_mx", "did you mean optimizer.rho_max?", []),
    "spec that expands to zero runs": (
        "grid:\n  optimizer.lr: [0.1, 0.2]\nexclude:\n  - {optimizer.lr: 0.1}\n"
        "  - {optimizer.lr: 0.2}\n", "exclude:", "exclude", "zero runs", []),
    "more runs than max_runs": (
        "max_runs: 3\ngrid:\n  optimizer.lr: [0.1, 0.2]\nseeds: 2\n", "max_runs:", "max_runs",
        "4 runs, more than max_runs 3", []),
    "invalid YAML": ("grid: {optimizer.lr: [0.1\nseeds: 2\n", "seeds: 2", "", "invalid YAML", []),
    "base file that does not exist": (
        "base: nowhere/base.yaml\n", "base: nowhere", "base", "no such file", []),
    "unknown profile": (
        "profiles:\n  smoke: {seeds: 1}\n", "profiles:", "profiles", "unknown profile 'smok'",
        ["--profile", "smok"]),
    "unknown executor key": (
        "executor: {cluster: slurm, slurm_partitoin: gpu}\n", "executor:",
        "executor.slurm_partitoin", "did you mean slurm_partition?", []),
    "unknown executor": ("executor: sluurm\n", "executor:", "executor.cluster",
                         "did you mean slurm?", []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_exits_2_naming_key_and_line_and_writes_nothing(case, tmp_path, capsys):
    body, marker, key, message, extra = CASES[case]
    no_base = case in ("base file that does not exist",)
    spec = write_spec(tmp_path, body, base=not no_base)
    out = tmp_path / "out"
    code = cli("sweep", "run", spec, "--out", out, *extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    lines = spec.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if marker in text)
    where = f"{spec}:{line}: " + (f"{key}: " if key else "")
    if extra[:1] == ["-o"]:  # a value given on the command line has no line
        where = f"override: {key}: "
    assert where in err, err
    assert message in err, err
    assert not out.exists()


def test_max_runs_guard_gives_way_to_yes(tmp_path, capsys):
    spec = write_spec(tmp_path, "max_runs: 3\ngrid:\n  optimizer.lr: [0.1, 0.2]\nseeds: 2\n")
    assert cli("sweep", "plan", spec, "--yes") == 0
    assert "4 runs" in capsys.readouterr().out


def test_unknown_override_key_is_named(tmp_path, capsys):
    spec = write_spec(tmp_path, "grid:\n  optimizer.lr: [0.1]\n")
    assert cli("sweep", "plan", spec, "-o", "grdi.optimizer.lr=[0.2]") == 2
    assert "override: grdi.optimizer.lr: unknown key; did you mean grid?" in capsys.readouterr().err
