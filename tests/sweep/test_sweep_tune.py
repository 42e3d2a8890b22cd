"""The `tune:` protocol: parsing, equal trial counts, seeded search, and selection on validation
under an equal budget (pure functions; the end-to-end sweep test is at the bottom)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gsam_repro.errors import ConfigError
from gsam_repro.sweep import tune
from gsam_repro.sweep.tune import TrialResult, parse_tune, select, trial_entries, trial_settings
from gsam_repro.train.config import config_from_dict, run_id


def error(path: str, message: str) -> ConfigError:
    return ConfigError(path, message)


def spec(**changes) -> dict:
    body = {
        "trials": 4, "search": "random", "seed": 0, "metric": "best_val_acc",
        "final_seeds": [1, 2, 3],
        "methods": {
            "sgd": {"optimizer.name": "sgd", "optimizer.lr": {"loguniform": [0.01, 0.3]}},
            "sam": {"optimizer": {"name": "sam", "lr": [0.05, 0.1],
                                  "rho": {"uniform": [0.01, 0.1]}}},
        },
    }
    body.update(changes)
    return body


def test_every_method_gets_exactly_the_budget_and_trial_k_does_not_depend_on_it():
    parsed = parse_tune(spec(), error)
    for method in parsed.methods:
        settings = trial_settings(parsed, method)
        assert len(settings) == 4
        bigger = trial_settings(parse_tune(spec(trials=9), error), method)
        assert bigger[:4] == settings  # raising the budget keeps the finished trials
    sgd, sam = (trial_settings(parsed, m) for m in parsed.methods)
    assert all(0.01 <= s["optimizer.lr"] <= 0.3 for s in sgd)
    assert all(s["optimizer.lr"] in (0.05, 0.1) and 0.01 <= s["optimizer.rho"] <= 0.1 for s in sam)
    assert len({s["optimizer.lr"] for s in sgd}) == 4  # draws, not one value repeated
    assert trial_settings(parse_tune(spec(seed=5, final_seeds=[1]), error),
                          parsed.methods[0]) != sgd  # the seed drives the search


def test_random_search_draws_are_the_documented_distributions():
    # loguniform over [0.01, 0.3]: log10 of many draws is uniform on [-2, log10 0.3]
    parsed = parse_tune(spec(trials=4000), error)
    lrs = np.array([s["optimizer.lr"] for s in trial_settings(parsed, parsed.methods[0])])
    logs = np.log10(lrs)
    low, high = -2.0, math.log10(0.3)
    assert logs.min() >= low - 1e-3 and logs.max() <= high + 1e-3
    assert np.mean(logs) == pytest.approx((low + high) / 2, abs=0.03)
    assert np.mean(logs < (low + high) / 2) == pytest.approx(0.5, abs=0.03)


def test_list_valued_keys_are_values_not_ranges():
    parsed = parse_tune(spec(methods={"sam": {
        "optimizer": {"name": "sam", "lr": [0.05, 0.1], "kwargs": {"foo": 1}},
        "eval.probe_rhos": [0.05, 0.1]}}), error)
    (method,) = parsed.methods
    assert [r.key for r in method.ranges] == ["optimizer.lr"]
    assert method.fixed == {"optimizer.name": "sam", "optimizer.kwargs": {"foo": 1},
                            "eval.probe_rhos": [0.05, 0.1]}


def test_grid_search_runs_every_point_once():
    body = spec(search="grid", trials=4, methods={
        "sam": {"optimizer.name": "sam", "optimizer.lr": [0.05, 0.1],
                "optimizer.rho": [0.02, 0.05]},
        "sgd": {"optimizer.name": "sgd", "optimizer.lr": [0.01, 0.03, 0.1, 0.3]},
    })
    parsed = parse_tune(body, error)
    sam = trial_settings(parsed, parsed.methods[0])
    assert sorted((s["optimizer.lr"], s["optimizer.rho"]) for s in sam) == [
        (0.05, 0.02), (0.05, 0.05), (0.1, 0.02), (0.1, 0.05)]


def test_trials_are_tagged_and_their_run_ids_distinct():
    parsed = parse_tune(spec(), error)
    entries = trial_entries(parsed)
    assert len(entries) == 8
    assert {(e.method, e.index) for e in entries} == {(m, k) for m in ("sgd", "sam")
                                                     for k in range(4)}
    configs = []
    for entry in entries:
        tree: dict = {}
        for key, value in entry.flat.items():
            section, _, name = key.rpartition(".")
            (tree.setdefault(section, {}) if section else tree)[name] = value
        configs.append(config_from_dict(tree))
    assert all(c.tuning.phase == "trial" and c.seed == 0 for c in configs)
    assert len({run_id(c) for c in configs}) == 8
    untagged = config_from_dict({"optimizer": {"name": "sgd"}})
    assert untagged.tuning.phase is None  # outside tuning the tags stay unset


@pytest.mark.parametrize("change, key, words", [
    ({"trails": 3}, "tune.trails", "did you mean trials"),
    ({"trials": 0}, "tune.trials", ">= 1"),
    ({"trials": 2.5}, "tune.trials", ">= 1"),
    ({"search": "bayes"}, "tune.search", "random, grid"),
    ({"metric": "test_acc"}, "tune.metric", "test set"),
    ({"metric": "best_test_acc"}, "tune.metric", "not a validation metric"),
    ({"final_seeds": []}, "tune.final_seeds", "non-empty"),
    ({"final_seeds": [0, 1]}, "tune.final_seeds", "trials' training seed 0"),
    ({"final_seeds": [1, 1]}, "tune.final_seeds", "repeat"),
    ({"methods": {}}, "tune.methods", "mapping"),
    ({"methods": {"x": {"optimizer.lr": [0.1]}}}, "tune.methods.x", "optimizer.name"),
    ({"methods": {"x": {"optimizer.name": "sgd", "optimizer.lrr": [0.1]}}},
     "tune.methods.x.optimizer.lrr", "did you mean optimizer.lr"),
    ({"methods": {"x": {"optimizer.name": "sgd", "optimizer.lr": 0.1}}}, "tune.methods.x",
     "no range to search"),
    ({"methods": {"x": {"optimizer.name": "sgd", "seed": [1, 2]}}}, "tune.methods.x.seed",
     "tune section"),
    ({"methods": {"x": {"optimizer.name": "sgd", "optimizer.lr": {"loguniform": [0, 1]}}}},
     "tune.methods.x.optimizer.lr.loguniform", "low > 0"),
    ({"methods": {"x": {"optimizer.name": "sgd", "optimizer.lr": {"uniform": [0.3, 0.1]}}}},
     "tune.methods.x.optimizer.lr.uniform", "below high"),
    ({"methods": {"x": {"optimizer.name": "sgd", "optimizer.lr": {"normal": [0.3, 0.1]}}}},
     "tune.methods.x.optimizer.lr", "uniform: [low, high]"),
    ({"search": "grid", "trials": 3, "methods": {"x": {"optimizer.name": "sgd",
                                                       "optimizer.lr": [0.1, 0.2]}}},
     "tune.methods.x", "grid of 2 points"),
    ({"search": "grid", "trials": 2, "methods": {"x": {"optimizer.name": "sgd", "optimizer.lr":
                                                       {"uniform": [0.1, 0.2]}}}},
     "tune.methods.x.optimizer.lr.uniform", "lists of values"),
])
def test_bad_tune_sections_name_the_key(change, key, words):
    with pytest.raises(ConfigError) as caught:
        parse_tune(spec(**change), error)
    assert caught.value.key == key
    assert words in str(caught.value)


# ------------------------------------------------------------------ the demanded test
def synthetic_trials() -> list[TrialResult]:
    """Method "wide" improves slowly with every extra trial and would win with ten; "narrow" is
    good within three. Validation accuracy of each trial, in trial order."""
    wide = [70.0 + 2.5 * k for k in range(10)]  # 70, 72.5, 75, ... 92.5
    narrow = [80.0, 81.0, 80.5]
    return ([TrialResult("wide", k, v) for k, v in enumerate(wide)]
            + [TrialResult("narrow", k, v) for k, v in enumerate(narrow)])


def winner(chosen: dict[str, TrialResult]) -> str:
    return max(chosen, key=lambda m: chosen[m].value)


def test_a_method_that_wins_only_with_more_trials_does_not_win_at_an_equal_budget():
    results = synthetic_trials()
    unequal = {m: r for m, r in select(results, trials=10).items()}
    assert winner(unequal) == "wide" and unequal["wide"].trial == 9  # ten trials: it wins
    equal = select(results, trials=3)  # the spec says 3 each: trials past the budget ignored
    assert equal["wide"].trial == 2 and equal["wide"].value == 75.0
    assert equal["narrow"].trial == 1 and equal["narrow"].value == 81.0
    assert winner(equal) == "narrow"
    # and the confirmation runs of exactly those chosen trials
    parsed = parse_tune(spec(trials=3, methods={
        "wide": {"optimizer.name": "sgd", "optimizer.lr": {"loguniform": [0.001, 1.0]}},
        "narrow": {"optimizer.name": "sam", "optimizer.lr": [0.05, 0.1]}}), error)
    trials = {(e.method, e.index): e for e in trial_entries(parsed)}
    chosen = {m: trials[(m, r.trial)] for m, r in equal.items()}
    confirm = tune.confirmation_entries(parsed, chosen)
    assert [(e.method, e.index) for e in confirm] == [("wide", s) for s in (1, 2, 3)] + [
        ("narrow", s) for s in (1, 2, 3)]
    for entry in confirm:
        setting = chosen[entry.method].flat
        assert entry.flat["optimizer.lr"] == setting["optimizer.lr"]
        assert entry.flat["tuning.phase"] == "confirm" and entry.flat["seed"] == entry.index


def test_selection_ties_lower_is_better_and_runs_without_a_value():
    results = [TrialResult("a", 0, 1.0), TrialResult("a", 1, 1.0), TrialResult("a", 2, None),
               TrialResult("b", 0, float("nan")), TrialResult("b", 1, None)]
    assert select(results, trials=3)["a"].trial == 0  # ties go to the earlier trial
    assert "b" not in select(results, trials=3)  # nothing to choose from
    loss = [TrialResult("a", 0, 0.9), TrialResult("a", 1, 0.4), TrialResult("a", 2, 0.6)]
    assert select(loss, trials=3, higher_is_better=False)["a"].trial == 1
    assert tune.best_so_far([70.0, None, 75.0, 72.0]) == [70.0, 70.0, 75.0, 75.0]
    assert tune.best_so_far([0.9, 0.4, 0.6], higher_is_better=False) == [0.9, 0.4, 0.4]


# ------------------------------------------------------------------------------- end to end
TUNED_SPEC = """\
executor: debug
force: {data.val_size: 16, eval.probe_batches: 0}
tune:
  trials: 2
  seed: 0
  metric: val_loss  # continuous: on 16 validation images accuracies tie, losses do not
  final_seeds: [1, 2]
  methods:
    sgd: {optimizer.name: sgd, optimizer.lr: {loguniform: [0.01, 0.3]}}
    sam: {optimizer.name: sam, optimizer.lr: [0.05, 0.1], optimizer.rho: {uniform: [0.01, 0.1]}}
"""


def _runs(sweep: Path) -> list[dict]:
    import json

    import yaml

    out = []
    for run_dir in sorted((sweep / "runs").iterdir()):
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        out.append({"config": config, "summary": summary})
    return out


def test_sweep_run_tunes_with_equal_budgets_then_confirms_the_validation_best(tmp_path,
                                                                              capsys):
    from sweep_testkit import cli, write_spec

    spec = write_spec(tmp_path, TUNED_SPEC)
    out = tmp_path / "sweep"
    assert cli("sweep", "plan", spec, "--out", out) == 0
    shown = capsys.readouterr().out
    assert "2 trials per method" in shown and "decided after every trial" in shown
    assert "4 runs" in shown  # the trial phase only, until it has finished

    assert cli("sweep", "run", spec, "--out", out) == 0
    runs = _runs(out)
    trials = [r for r in runs if r["config"]["tuning"]["phase"] == "trial"]
    confirm = [r for r in runs if r["config"]["tuning"]["phase"] == "confirm"]
    for method in ("sgd", "sam"):
        mine = [r for r in trials if r["config"]["tuning"]["method"] == method]
        assert sorted(r["config"]["tuning"]["trial"] for r in mine) == [0, 1]  # equal budget
        assert all(r["config"]["seed"] == 0 for r in mine)
        losses = [r["summary"]["val_loss"] for r in mine]
        assert len(set(losses)) == 2  # a real choice, not a tie
        best = mine[int(np.argmin(losses))]
        final = [r for r in confirm if r["config"]["tuning"]["method"] == method]
        assert sorted(r["config"]["seed"] for r in final) == [1, 2]
        for run in final:  # the chosen setting = the validation argmax among the trials
            assert run["config"]["optimizer"] == best["config"]["optimizer"]
    assert "trial" in capsys.readouterr().err

    assert cli("sweep", "run", spec, "--out", out) == 0  # resumable and idempotent
    assert "nothing to run: 8 of 8 runs finished" in capsys.readouterr().out
    assert len(list((out / "runs").iterdir())) == 8


def test_a_tune_spec_with_a_grid_or_a_bad_section_exits_2(tmp_path, capsys):
    from sweep_testkit import cli, write_spec

    spec = write_spec(tmp_path, TUNED_SPEC + "grid:\n  optimizer.momentum: [0.0, 0.9]\n")
    assert cli("sweep", "plan", spec) == 2
    assert "grid" in capsys.readouterr().err
    spec = write_spec(tmp_path, TUNED_SPEC.replace("metric: val_loss", "metric: test_acc"))
    assert cli("sweep", "plan", spec) == 2
    assert "tune.metric" in capsys.readouterr().err
    spec = write_spec(tmp_path, TUNED_SPEC)
    assert cli("sweep", "plan", spec, "tune.trials=0") == 2  # an override is checked the same
    assert "tune.trials" in capsys.readouterr().err
    spec = write_spec(tmp_path, TUNED_SPEC.replace("data.val_size: 16", "data.val_size: 0"))
    assert cli("sweep", "plan", spec) == 2  # no validation set: nothing honest to choose on
    assert "tune.metric" in capsys.readouterr().err
