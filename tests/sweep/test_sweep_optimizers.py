"""`sweep plan` checks each run's model and optimizer before anything runs (unknown names with
the closest one, keywords the optimizer does not take, a user's class like a built-in), and
drops the optimizer keys a run's optimizer does not take when they come from the base config."""

from __future__ import annotations

import textwrap

import pytest
from sweep_testkit import cli, write_spec

from gsam_repro.errors import ConfigError
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec
from gsam_repro.train.config import config_from_dict, run_id

USER_FILE = textwrap.dedent('''
    import torch

    class HalfStepSGD(torch.optim.SGD):
        def __init__(self, params, lr=0.1, **kwargs):
            super().__init__(params, lr=lr / 2, **kwargs)
''')

CASES = {
    "unknown optimizer": ("grid:\n  optimizer:\n    - {name: sgd}\n    - {name: gsma}\n",
                          "{name: gsma}", "grid.optimizer[1].name", "did you mean gsam?"),
    "unknown model": ("grid:\n  model.name: [small_cnn, smal_cnn]\n", "model.name:",
                      "grid.model.name[1]", "did you mean small_cnn"),
    "bad keyword on a built-in": ("grid:\n  optimizer:\n    - {name: sam, alpha: 0.1}\n",
                                  "alpha: 0.1", "grid.optimizer[0].alpha",
                                  "alpha does not apply to optimizer 'sam'"),
    "bad keyword on a user file.py:Class": (
        "grid:\n  optimizer:\n    - {name: 'my_opt.py:HalfStepSGD', kwargs: {momentun: 0.9}}\n",
        "momentun", "grid.optimizer[0].kwargs.momentun", "did you mean momentum?"),
    "a key the variant itself writes": (
        "grid:\n  optimizer:\n    - {name: sam}\n    - {name: sgd, rho: 0.1}\n", "rho: 0.1",
        "grid.optimizer[1].rho", "rho does not apply to optimizer 'sgd'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plan_refuses_before_anything_runs(case, tmp_path, monkeypatch, capsys):
    body, marker, key, message = CASES[case]
    (tmp_path / "my_opt.py").write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, body)
    out = tmp_path / "out"
    assert cli("sweep", "plan", spec) == 2
    assert cli("sweep", "run", spec, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if marker in text)
    assert err[0] == err[1] and f"{spec}:{line}: {key}: " in err[0] and message in err[0], err
    assert not out.exists()


def test_a_user_file_class_with_keys_it_takes_plans(tmp_path, monkeypatch):
    (tmp_path / "my_opt.py").write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, "grid:\n  optimizer.name: ['my_opt.py:HalfStepSGD', sgd]\n")
    assert len(expand(load_spec(spec)).runs) == 2


def _base_sets_rho(tmp_path):
    spec = write_spec(tmp_path, "grid:\n  optimizer:\n    - {name: sgd}\n    - {name: sam}\n")
    return expand(load_spec(spec, ["base.optimizer.rho=0.05", "base.optimizer.base=sgd"]))


def test_base_keys_a_variant_does_not_take_are_dropped_for_it(tmp_path):
    sweep = _base_sets_rho(tmp_path)
    sgd, sam = sweep.runs
    assert sgd.dropped == ("optimizer.base", "optimizer.rho") and sam.dropped == ()
    tree = sweep.tree(sgd)
    assert "rho" not in tree["optimizer"] and "base" not in tree["optimizer"]
    cfg = sweep.config(sgd)
    assert cfg.optimizer.rho is None and cfg.optimizer.base is None
    # the id is that of the config without them, computed from scratch
    plain = config_from_dict({**tree, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}})
    assert sgd.run_id == run_id(cfg) == run_id(plain)
    assert sweep.config(sam).optimizer.rho == 0.05 and sweep.config(sam).optimizer.base == "sgd"
    assert run_id(sweep.config(sam)) == sam.run_id


def test_the_old_base_null_spelling_names_the_same_run(tmp_path):
    dropped = _base_sets_rho(tmp_path).runs[0]
    spec = write_spec(tmp_path, "grid:\n  optimizer:\n    - {name: sgd, base: null, rho: null}\n",
                      name="old.yaml")
    old = expand(load_spec(spec, ["base.optimizer.rho=0.05", "base.optimizer.base=sgd"]))
    assert [r.run_id for r in old.runs] == [dropped.run_id]


def test_forced_keys_are_dropped_too_but_an_include_entry_is_its_own_variant(tmp_path):
    spec = write_spec(tmp_path, "grid:\n  optimizer:\n    - {name: sgd}\n    - {name: sam}\n")
    sweep = expand(load_spec(spec, ["optimizer.rho=0.1"]))  # -o on a config key: forced
    assert [r.dropped for r in sweep.runs] == [("optimizer.rho",), ()]
    assert sweep.config(sweep.runs[1]).optimizer.rho == 0.1
    bad = write_spec(tmp_path, "grid:\n  optimizer: [{name: sam}]\ninclude:\n"
                     "  - {optimizer.name: sgd, optimizer.rho: 0.1}\n", name="bad.yaml")
    with pytest.raises(ConfigError) as caught:
        expand(load_spec(bad))
    assert "include[0].optimizer.rho" in str(caught.value)
