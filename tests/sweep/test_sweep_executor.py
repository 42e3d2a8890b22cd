"""The spec's executor section is checked by submitit's public API at plan time; the one private
name read (for "did you mean" hints) is pinned here so a submitit release that drops it fails
this test rather than silently losing the hints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sweep_testkit import cli, write_spec

from gsam_repro.sweep import executor


def test_private_submitit_names_used_are_only_the_pinned_one():
    source = Path(executor.__file__).read_text()
    private_calls = set(re.findall(r"\.(_[a-z]\w*)\(", source))
    assert private_calls <= {"_valid_parameters"}, private_calls


def test_submitit_still_lists_its_parameters_for_hints():
    from submitit import AutoExecutor
    from submitit.core import plugins

    assert callable(getattr(AutoExecutor, "_valid_parameters", None)), (
        "submitit.AutoExecutor._valid_parameters is gone: update submitit_parameter_names")
    assert {"slurm", "local", "debug"} <= set(plugins.get_executors())
    names = executor.submitit_parameter_names()
    assert {"mem_gb", "gpus_per_node", "slurm_partition", "slurm_qos", "local_setup"} <= set(names)
    assert "name" not in names and "timeout_min" not in names  # the sweep sets those


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("slurm_partition", "gpu", True), ("mem_gb", 8, True), ("local_setup", ["x"], True),
    ("slurm_partitoin", "gpu", False), ("mem_gb", "lots", False), ("partition", "gpu", False),
])
def test_submitit_problem_asks_submitit(key, value, ok):
    problem = executor.submitit_problem(key, value)
    assert (problem is None) is ok, problem
    if key in ("slurm_partitoin", "partition"):
        assert isinstance(problem, (NameError, UserWarning))


@pytest.mark.parametrize(("body", "key", "message"), [
    ("executor: {mem_gb: lots}\n", "executor.mem_gb", "submitit refuses mem_gb='lots'"),
    ("executor: {name: job}\n", "executor.name", "set by the sweep"),
    ("executor: {slurm_qoss: high}\n", "executor.slurm_qoss", "did you mean slurm_qos?"),
])
def test_bad_executor_key_exits_2_naming_it(tmp_path, capsys, body, key, message):
    spec = write_spec(tmp_path, body)
    assert cli("sweep", "plan", spec) == 2
    err = capsys.readouterr().err
    assert f"{key}: " in err and message in err, err


def test_good_executor_keys_pass_to_the_plan(tmp_path):
    from gsam_repro.sweep.spec import load_spec

    spec = write_spec(tmp_path, "executor: {cluster: local, mem_gb: 4, slurm_partition: gpu}\n")
    assert load_spec(spec).executor.params == {"mem_gb": 4, "slurm_partition": "gpu"}


def test_deprecated_submitit_name_is_refused_with_its_replacement(tmp_path, capsys):
    spec = write_spec(tmp_path, "executor: {partition: gpu}\n")
    assert cli("sweep", "plan", spec) == 2
    err = capsys.readouterr().err
    assert "executor.partition: " in err and "slurm_partition" in err, err
