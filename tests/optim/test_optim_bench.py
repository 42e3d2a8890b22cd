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
    assert set(vector["optimizers"]) == {"sgd", "sam", "gsam", "weighted", "official_gsam"}
    assert vector["params"] == pytest.approx(0.3e6, rel=0.05)
    buffers = {name: row["extra_buffers_per_param"] for name, row in vector["optimizers"].items()}
    assert buffers == {"sgd": 0.0, "sam": 1.0, "gsam": 1.0, "weighted": 1.0,  # g, nothing else
                       "official_gsam": 2.0}  # g and eps
    assert vector["gsam/official_gsam"] > 0
    assert vector["one_reduction_read_ms_per_million"] > 0
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


def test_the_official_style_reference_takes_gsams_steps():
    """The benchmark's stand-in for the official code computes what GSAM computes (constant
    rho), so timing the two compares the same arithmetic."""
    from optim_testkit import classification_batch, make_closure, small_mlp

    from gsam_repro.bench.official_gsam import OfficialStyleGSAM
    from gsam_repro.optim import GSAM

    x, y = classification_batch()
    ours, theirs = small_mlp(), small_mlp()
    settings = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    gsam = GSAM(ours.parameters(), rho_max=0.05, alpha=0.3, **settings)
    official = OfficialStyleGSAM(list(theirs.parameters()), rho=0.05, alpha=0.3, **settings)
    for _ in range(4):
        gsam.step(make_closure(ours, x, y))
        official.step(make_closure(theirs, x, y))
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert not torch.equal(next(ours.parameters()), next(small_mlp().parameters()))  # it moved
