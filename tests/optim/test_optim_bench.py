"""`gsam-repro bench optim --quick` runs end to end and writes a complete JSON record."""

from __future__ import annotations

import json

import pytest
import torch

from gsam_repro.cli import main


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_benchmark_writes_every_figure(tmp_path, keep_threads, capsys):
    output = tmp_path / "optim.json"
    assert main(["bench", "optim", "--quick", "--threads", "1", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert "gsam-repro bench optim --device cpu --threads 1 " in result["command"]
    assert f"--output {output}" in result["command"]

    vector = result["vector_work"]
    assert set(vector["optimizers"]) == {"sgd", "sam", "gsam", "weighted"}
    assert vector["params"] == pytest.approx(0.3e6, rel=0.05)
    buffers = {name: row["extra_buffers_per_param"] for name, row in vector["optimizers"].items()}
    assert buffers == {"sgd": 0.0, "sam": 1.0, "gsam": 1.0, "weighted": 1.0}  # g, nothing else
    assert all(row["base_buffers_per_param"] == 1.0 for row in vector["optimizers"].values())

    whole = result["whole_step"]
    assert set(whole["ratios"]) == {"gsam/sam", "weighted/sam", "sam/sgd", "gsam/sgd"}
    assert whole["ratios"]["gsam/sam"] == pytest.approx(
        whole["step_ms"]["gsam"] / whole["step_ms"]["sam"])
    assert all(len(v) == 2 for v in whole["step_samples_ms"].values())  # --quick: 2 repeats
    assert all(len(row["step_samples_ms"]) == 2 for row in vector["optimizers"].values())
    assert "omp_wait_policy" in result["environment"]
    assert "sam/sgd" in capsys.readouterr().out
    assert set(whole["ratios_from_minimums"]) == set(whole["ratios_paired"]) == set(whole["ratios"])
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_bad_numbers_are_usage_errors(tmp_path, keep_threads, capsys):
    assert main(["bench", "optim", "--repeats", "0", "--output", str(tmp_path / "x.json")]) == 2
    assert "--repeats" in capsys.readouterr().err
