"""`gsam-repro bench train --quick` runs end to end and its figures agree with each other."""

from __future__ import annotations

import json

import pytest

from gsam_repro.cli import main


def test_quick_benchmark_writes_consistent_figures(tmp_path, capsys):
    output = tmp_path / "train.json"
    assert main(["bench", "train", "--quick", "--threads", "1", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    sgd, gsam = report["results"]["sgd"], report["results"]["gsam"]
    assert sgd["passes_per_step"] == 1 and gsam["passes_per_step"] == 2
    assert report["sgd_over_gsam_of_medians"] == pytest.approx(
        sgd["images_per_s"] / gsam["images_per_s"])
    assert report["sgd_over_gsam_throughput"] == pytest.approx(  # one repeat: one pair
        report["sgd_over_gsam_of_medians"])
    for result in (sgd, gsam):
        assert 0 <= result["data_wait_frac"] < 1
        batch = report["settings"]["batch_size"]
        assert result["images_per_s"] == pytest.approx(1000 * batch / result["step_ms"])
    assert "SGD / GSAM throughput" in capsys.readouterr().out
