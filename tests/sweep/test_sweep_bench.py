"""`gsam-repro bench sweep` at a tiny scale: it runs, prints figures and writes its JSON."""

from __future__ import annotations

import json

import pytest
from sweep_testkit import cli


def test_bench_sweep_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert cli("bench", "sweep", "--scale", "0.002", "--repeats", "1", "--out", out,
               "--parts", "scale") == 0
    data = json.loads(out.read_text())
    expected = {"expand", "plan", "status", "plan_cli", "status_cli", "gather_scratch",
                "gather_unchanged", "gather_cli_scratch", "gather_cli_unchanged"}
    assert set(data["figures"]) == expected
    for figure in data["figures"].values():
        assert figure["median_s"] == figure["repeats_s"][0] > 0
        assert figure["size"] >= 1
    assert data["figures"]["expand"]["size"] == 4 * 10 * 10 * 5  # one seed at this scale
    printed = capsys.readouterr().out
    assert all(name in printed for name in expected)


@pytest.mark.slow
def test_bench_small_sweep_measures_both_local_modes_and_keeps_other_figures(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    out.write_text(json.dumps({"figures": {"expand": {"median_s": 1.0}}}))
    assert cli("bench", "sweep", "--parts", "small", "--small-runs", "2", "--scale", "0.01",
               "--max-parallel", "1", "--out", out) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["expand"] == {"median_s": 1.0}  # a part not run keeps its figures
    for mode in ("pool", "process"):
        figure = figures[f"small_sweep_{mode}"]
        assert figure["size"] == 4  # one seed of the 4 optimizers: at least the runs asked
        # the ratio is recomputed here from its parts: wall over (sum of run times / parallel)
        assert figure["overhead_ratio"] == figure["median_s"] / figure["run_s_sum"]
        assert figure["overhead_ratio"] > 1  # a sweep cannot beat its own runs
    assert "overhead ratio" in capsys.readouterr().out
