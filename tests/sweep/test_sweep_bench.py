"""`gsam-repro bench sweep` at a tiny scale: it runs, prints figures and writes its JSON."""

from __future__ import annotations

import json

from sweep_testkit import cli


def test_bench_sweep_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert cli("bench", "sweep", "--scale", "0.002", "--repeats", "1", "--out", out) == 0
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
