"""Spec expansion: what runs a spec asks for, checked against a brute-force expansion."""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml
from sweep_testkit import BASE_YAML, write_spec

from gsam_repro.errors import ConfigError
from gsam_repro.sweep.ids import MAX_NAME_CHARS, id_from_dir_name, safe_name
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec, sweep_dir
from gsam_repro.train.config import config_from_dict, run_id
from gsam_repro.yamlio import set_dotted

BASE = yaml.safe_load(BASE_YAML)["base"]

OPTIMIZERS = [
    {"name": "sgd"},
    {"name": "sam", "rho": 0.05},
    {"name": "gsam", "rho_max": 0.05, "rho_min": 0.01, "alpha": 0.1},
]


def brute_force(axes: list[list[dict]], force: dict | None = None) -> list[str]:
    """Run ids of the product of `axes` (each a list of {dotted key: value} assignments),
    built the slow obvious way: copy the base, set keys, config_from_dict, run_id."""
    out = []
    for combo in itertools.product(*axes):
        tree = copy.deepcopy(BASE)
        for assignment in [*combo, force or {}]:
            for key, value in assignment.items():
                set_dotted(tree, key, value)
        out.append(run_id(config_from_dict(tree)))
    return out


def optimizer_axis() -> list[dict]:
    return [{f"optimizer.{k}": v for k, v in o.items()} for o in OPTIMIZERS]


def planned_ids(sweep) -> list[str]:
    return [run.run_id for run in sweep.runs]


def test_grid_of_mapping_variants_lr_and_seeds(tmp_path):
    path = write_spec(tmp_path, """
        grid:
          optimizer:
            - {name: sgd}
            - {name: sam, rho: 0.05}
            - {name: gsam, rho_max: 0.05, rho_min: 0.01, alpha: 0.1}
          optimizer.lr: [0.1, 0.05]
        seeds: 3
    """)
    sweep = expand(load_spec(path))
    assert len(sweep.runs) == 3 * 2 * 3
    expected = brute_force([optimizer_axis(), [{"optimizer.lr": 0.1}, {"optimizer.lr": 0.05}],
                            [{"seed": s} for s in range(3)]])
    assert planned_ids(sweep) == expected
    for run in sweep.runs:  # every planned id is what the trainer will compute
        cfg = sweep.config(run)
        assert run_id(cfg) == run.run_id
        if cfg.optimizer.name == "sgd":  # a mapping variant sets only its own keys
            assert cfg.optimizer.alpha is None and cfg.optimizer.rho is None
        assert cfg.optimizer.momentum == 0.9  # the base's keys stay


def test_zip_axes_vary_together(tmp_path):
    path = write_spec(tmp_path, """
        grid:
          optimizer: [{name: gsam, rho_min: 0.0}]
        zip:
          optimizer.rho_max: [0.02, 0.05, 0.1]
          optimizer.alpha: [0.01, 0.1, 0.3]
        seeds: [7, 11]
    """)
    sweep = expand(load_spec(path))
    zipped = [{"optimizer.rho_max": r, "optimizer.alpha": a}
              for r, a in [(0.02, 0.01), (0.05, 0.1), (0.1, 0.3)]]
    expected = brute_force([[{"optimizer.name": "gsam", "optimizer.rho_min": 0.0}], zipped,
                            [{"seed": 7}, {"seed": 11}]])
    assert planned_ids(sweep) == expected


def test_several_zip_groups_multiply(tmp_path):
    path = write_spec(tmp_path, """
        zip:
          - {optimizer.lr: [0.1, 0.2], schedule.epochs: [1, 2]}
          - {data.train_size: [16, 32, 48], data.test_size: [8, 8, 16]}
    """)
    assert len(expand(load_spec(path)).runs) == 2 * 3


def test_exclude_drops_by_partial_match_and_include_adds(tmp_path):
    path = write_spec(tmp_path, """
        grid:
          optimizer:
            - {name: sgd}
            - {name: sam, rho: 0.05}
          optimizer.lr: [0.1, 0.05]
        seeds: 2
        exclude:
          - {optimizer.name: sgd, optimizer.lr: 5e-2}   # written as text: still matches 0.05
        include:
          - {optimizer: {name: weighted, rho: 0.05, lam: 0.1}}
    """)
    sweep = expand(load_spec(path))
    lrs = [{"optimizer.lr": 0.1}, {"optimizer.lr": 0.05}]
    seeds = [{"seed": 0}, {"seed": 1}]
    product = brute_force([optimizer_axis()[:2], lrs, seeds])
    dropped = set(brute_force([optimizer_axis()[:1], [{"optimizer.lr": 0.05}], seeds]))
    weighted = [{"optimizer.name": "weighted", "optimizer.rho": 0.05, "optimizer.lam": 0.1}]
    added = brute_force([weighted, lrs, seeds])  # the include spans the axes it does not name
    assert planned_ids(sweep) == [i for i in product if i not in dropped] + added
    assert len(sweep.runs) == 8 - 2 + 4


def test_same_run_asked_twice_is_one_run(tmp_path):
    # train.threads does not change a result: both values give one run id
    path = write_spec(tmp_path, """
        grid:
          train.threads: [1, 2]
          optimizer.lr: [0.1, 0.05]
    """)
    sweep = expand(load_spec(path))
    assert len(sweep.runs) == 2
    assert sweep.duplicates == 2


def test_run_ids_ignore_key_order_and_irrelevant_keys_but_not_relevant_ones(tmp_path):
    a = write_spec(tmp_path, "grid: {optimizer.lr: [0.1, 0.2]}\n", name="a.yaml")
    reordered = yaml.safe_dump({"grid": {"optimizer.lr": [0.1, 0.2]},
                                "base": dict(reversed(list(copy.deepcopy(BASE).items())))})
    b = tmp_path / "b.yaml"
    b.write_text(reordered)
    ids_a = planned_ids(expand(load_spec(a)))
    assert planned_ids(expand(load_spec(b))) == ids_a
    irrelevant = planned_ids(expand(load_spec(a, ["data.root=/elsewhere", "train.threads=2"])))
    assert irrelevant == ids_a
    relevant = planned_ids(expand(load_spec(a, ["optimizer.momentum=0.5"])))
    assert not set(relevant) & set(ids_a)


def test_run_dir_names_carry_varying_keys_and_end_with_the_id(tmp_path):
    path = write_spec(tmp_path, """
        grid:
          optimizer:
            - {name: sgd}
            - {name: gsam, rho_max: 0.05, rho_min: 0.01, alpha: 0.1}
          model.kwargs: [{}, {"odd key/with:chars": [1, 2]}]
        seeds: 2
    """)
    sweep = expand(load_spec(path))
    names = [run.name for run in sweep.runs]
    assert names[0].startswith("optimizer=sgd,") and "seed=0" in names[0]
    assert "rho_max=0.05" in names[4] and "alpha=0.1" in names[4]
    for run in sweep.runs:
        assert id_from_dir_name(run.name) == run.run_id
        assert safe_name(run.name) == run.name
        assert len(run.name) <= MAX_NAME_CHARS + 1 + len(run.run_id)
    assert len(set(names)) == len(names)


def test_profile_and_overrides(tmp_path):
    path = write_spec(tmp_path, """
        name: study
        grid:
          optimizer.lr: [0.1, 0.05, 0.02]
        seeds: 5
        executor: {cluster: local, timeout_min: 600}
        profiles:
          smoke:
            seeds: 1
            grid: {optimizer.lr: [0.1]}
            schedule.epochs: 1
            model: {name: small_cnn}
            executor: {timeout_min: 5}
    """)
    assert len(expand(load_spec(path)).runs) == 15
    smoke = load_spec(path, profile="smoke")
    assert len(expand(smoke).runs) == 1
    assert smoke.executor.timeout_min == 5 and smoke.executor.cluster == "local"
    assert smoke.out_dir.as_posix() == "results/study-smoke"
    assert sweep_dir(path).as_posix() == "results/study"
    assert sweep_dir(path, profile="smoke") == smoke.out_dir
    # -o: an axis, the seeds and a key fixed over every run (it wins over the axes)
    spec = load_spec(path, ["grid.optimizer.lr=[0.3,0.4]", "seeds=2", "schedule.epochs=3",
                            "executor.cluster=debug"])
    sweep = expand(spec)
    assert len(sweep.runs) == 4 and spec.executor.cluster == "debug"
    assert {sweep.config(r).optimizer.lr for r in sweep.runs} == {0.3, 0.4}
    assert {sweep.config(r).schedule.epochs for r in sweep.runs} == {3}
    forced = expand(load_spec(path, ["optimizer.lr=0.5"]))  # forced over the lr axis
    assert len(forced.runs) == 5 and forced.duplicates == 10


def test_base_from_a_file_relative_to_the_spec(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = write_spec(tmp_path, "base: configs/base.yaml\ngrid: {optimizer.lr: [0.1, 0.05]}\n",
                      base=False)
    sweep = expand(load_spec(path))
    assert planned_ids(sweep) == brute_force([[{"optimizer.lr": 0.1}, {"optimizer.lr": 0.05}]])


def test_a_key_error_in_a_base_file_points_into_that_file(tmp_path):
    bad = copy.deepcopy(BASE)
    bad["optimizer"]["momentun"] = 0.9
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    path = write_spec(tmp_path, "base: base.yaml\n", base=False)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.source.endswith("base.yaml") and info.value.key == "optimizer.momentun"
    assert "momentum" in str(info.value)
    line = (tmp_path / "base.yaml").read_text().splitlines()[info.value.line - 1]
    assert "momentun" in line


def test_cross_key_check_names_the_axis_value_that_breaks_it(tmp_path):
    path = write_spec(tmp_path, """
        grid:
          optimizer:
            - {name: gsam, rho_max: 0.05, rho_min: 0.01}
            - {name: gsam, rho_max: 0.05, rho_min: 0.1}
    """)
    with pytest.raises(ConfigError) as info:
        expand(load_spec(path))
    assert info.value.key == "grid.optimizer[1].rho_min"
    assert "rho_min: 0.1" in path.read_text().splitlines()[info.value.line - 1]


def test_a_base_may_lack_what_every_run_gets_from_an_axis(tmp_path):
    # imagefolder needs a root: the base alone fails the check, every run passes it
    path = write_spec(tmp_path, """
        force: {data.name: imagefolder}
        grid:
          data.root: [/data/a, /data/b]
    """)
    assert len(expand(load_spec(path)).runs) == 1  # data.root does not change the id


def test_a_large_grid_expands_with_ids_that_match_run_id(tmp_path):
    path = write_spec(tmp_path, """
        grid:
          optimizer: [{name: sgd}, {name: sam, rho: 0.05}]
          optimizer.lr: [0.1, 0.05, 0.02, 0.01]
          optimizer.weight_decay: [0.0, 1.0e-4, 5.0e-4]
          data.train_size: [16, 32]
        seeds: 5
    """)
    sweep = expand(load_spec(path))
    assert len(sweep.runs) == 2 * 4 * 3 * 2 * 5
    for run in sweep.runs[::7]:
        assert run_id(config_from_dict(sweep.tree(run))) == run.run_id


def test_an_exclude_entry_that_matches_no_run_is_a_warning(tmp_path, capsys):
    from sweep_testkit import cli

    path = write_spec(tmp_path, """
        grid:
          optimizer.lr: [0.1, 0.05]
        seeds: 2
        exclude:
          - {optimizer.lr: 0.1, seed: 1}
          - {optimizer.lr: 0.5}
    """)
    sweep = expand(load_spec(path))
    assert len(sweep.runs) == 3
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "0.5}" in text)
    assert sweep.warnings == [f"{path}:{line}: exclude[1]: matches no run of the grid: it "
                              "excludes nothing"]
    assert cli("sweep", "plan", path) == 0
    assert f"warning: {sweep.warnings[0]}" in capsys.readouterr().err


def _count_ids(monkeypatch) -> list:
    from gsam_repro.sweep import ids

    built = []
    finish = ids.IdBuilder.finish

    def counting(self, *args):
        built.append(1)
        return finish(self, *args)

    monkeypatch.setattr(ids.IdBuilder, "finish", counting)
    return built


def test_a_grid_of_a_million_runs_is_refused_before_any_run_is_built(tmp_path, monkeypatch):
    values = "[" + ", ".join(str(0.01 * (i + 1)) for i in range(10)) + "]"
    path = write_spec(tmp_path, f"""
        grid:
          optimizer.lr: {values}
          optimizer.weight_decay: {values}
          optimizer.momentum: {values}
          data.batch_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          schedule.epochs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        seeds: 10
    """)  # 10^6 = 100 x the default max_runs, the case the old bound let through
    built = _count_ids(monkeypatch)
    with pytest.raises(ConfigError, match="expands to 1,000,000 runs, more than max_runs 10,000"):
        expand(load_spec(path))
    assert built == []


def test_max_runs_stops_expansion_once_exceeded_when_excludes_hide_the_count(tmp_path,
                                                                             monkeypatch):
    path = write_spec(tmp_path, """
        max_runs: 20
        grid:
          optimizer.lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        seeds: 100
        exclude:
          - {seed: 0}
    """)
    built = _count_ids(monkeypatch)
    with pytest.raises(ConfigError, match="at least 21 runs, more than max_runs 20"):
        expand(load_spec(path))
    assert len(built) == 21  # not the 990 runs the grid holds


def test_exactly_max_runs_runs_are_allowed(tmp_path):
    path = write_spec(tmp_path, "max_runs: 4\ngrid:\n  optimizer.lr: [0.1, 0.2]\nseeds: 2\n")
    assert len(expand(load_spec(path)).runs) == 4
    duplicates = write_spec(tmp_path, "max_runs: 2\ngrid:\n  optimizer.lr: [0.1, 1e-1]\n"
                            "  train.threads: [1, 2]\n", name="dup.yaml")
    assert len(expand(load_spec(duplicates)).runs) == 1  # same config four times: one run
