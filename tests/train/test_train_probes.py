"""Sharpness probes, label noise and the run's new records, checked against direct computations."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from torch import nn
from train_testkit import OPTIMIZERS, read_json, smoke_tree

from gsam_repro.data import flip_labels
from gsam_repro.results.gather import gather
from gsam_repro.train import config_from_dict, run
from gsam_repro.train.config import probe_key, run_id
from gsam_repro.train.measure import label_memorization, sharpness_probes


def _model_and_batches(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
    generator = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(12, 5, generator=generator),
                torch.randint(0, 3, (12,), generator=generator)) for _ in range(3)]
    return model, batches


def _direct_gap(model: nn.Module, batches, rho: float, adaptive: bool) -> float:
    """f(w + rho * e) - f(w) on one flat float64 copy of the weights, per batch, averaged;
    e = g/||g|| (or |w|^2 g / || |w| g ||) of that batch."""
    reference = _double_copy(model)
    params = list(reference.parameters())
    gaps = []
    for x, y in batches:
        x = x.double()
        loss = nn.functional.cross_entropy(reference(x), y)
        grads = torch.autograd.grad(loss, params)
        w = torch.cat([p.detach().reshape(-1) for p in params])
        g = torch.cat([q.reshape(-1) for q in grads])
        e = (w.abs() ** 2 * g / torch.linalg.norm(w.abs() * g)) if adaptive else g / g.norm()
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(w + rho * e, params)
            perturbed = nn.functional.cross_entropy(reference(x), y).item()
            torch.nn.utils.vector_to_parameters(w, params)
        gaps.append(perturbed - loss.item())
    return float(np.mean(gaps))


def _double_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double().eval()


@pytest.mark.parametrize("adaptive", [False, True])
def test_probes_match_a_direct_computation_of_the_gap(adaptive):
    model, batches = _model_and_batches()
    model.train()
    rhos = [0.01, 0.1, 0.5]
    before = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    probes = sharpness_probes(model, nn.functional.cross_entropy, batches, rhos, adaptive=adaptive)
    for rho in rhos:
        assert probes["h"][rho] == pytest.approx(_direct_gap(model, batches, rho, adaptive),
                                                 rel=1e-4, abs=1e-6)
    # The weights and BatchNorm statistics are as they were, and the model is still training.
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))
    assert model.training
    assert probes["f"] == pytest.approx(np.mean([
        nn.functional.cross_entropy(_double_copy(model)(x.double()), y).item()
        for x, y in batches]), rel=1e-5)


def test_the_probe_grows_like_rho_norm_g_at_small_radii():
    # First order: h(r) ~ r ||g||, so h(r)/r at two small radii agree to within the curvature term.
    model, batches = _model_and_batches(seed=3)
    probes = sharpness_probes(model, nn.functional.cross_entropy, batches[:1], [1e-3, 2e-3])
    x, y = batches[0]
    model.eval()
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    assert probes["h"][1e-3] / 1e-3 == pytest.approx(norm, rel=2e-2)
    assert probes["h"][2e-3] / 2e-3 == pytest.approx(norm, rel=4e-2)


def test_symmetric_label_noise_flips_the_stated_share_to_other_classes():
    labels = np.arange(1000) % 10
    noisy, flipped = flip_labels(labels, 0.4, 10, noise_seed=0)
    assert flipped.sum() == 400
    assert np.all(noisy[flipped] != labels[flipped]) and np.all(noisy[~flipped] == labels[~flipped])
    # Every other class is a possible target, none preferred beyond sampling noise.
    counts = np.bincount((noisy[flipped] - labels[flipped]) % 10, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 20
    again, _ = flip_labels(labels, 0.4, 10, noise_seed=0)
    other, _ = flip_labels(labels, 0.4, 10, noise_seed=1)
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)


def test_memorization_counts_predictions_of_the_noisy_label():
    class Fixed(nn.Module):
        def forward(self, x):  # predicts class x[:, 0]
            return nn.functional.one_hot(x[:, 0].long(), 3).float()

    x = torch.tensor([[0.0], [1.0], [2.0], [1.0]])
    noisy = torch.tensor([0, 1, 0, 2])
    clean = np.array([0, 2, 2, 1])
    flipped = np.array([False, True, True, True])
    # flipped images: predicted 1 (noisy 1), 2 (noisy 0, clean 2), 1 (noisy 2, clean 1)
    result = label_memorization(Fixed(), [(x[:2], noisy[:2]), (x[2:], noisy[2:])], flipped, clean,
                                contextlib.nullcontext)
    assert result["memorized_pct"] == pytest.approx(100 / 3)
    assert result["flipped_clean_pct"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("name", ["sgd", "gsam"])
def test_every_run_records_probes_facts_and_provenance(tmp_path, name):
    tree = smoke_tree(optimizer=OPTIMIZERS[name], data={"label_noise": 0.3, "val_size": 64},
                      eval={"probe_rhos": [0.02, 0.05], "probe_batches": 2})
    summary = run(config_from_dict(tree), tmp_path / "runs" / "r")
    for rho in (0.02, 0.05):
        assert math.isfinite(summary[probe_key(rho)])
    assert 0 <= summary["memorized_pct"] <= 100
    assert summary["test_acc_at_best_val"] is not None
    assert summary["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert summary["cpu_model"]
    if name == "sgd":
        assert summary["optimizer_family"] == "plain" and summary["radius"] is None
        assert summary["passes_per_step"] == 1
    else:
        assert summary["optimizer_family"] == "sharpness_aware"
        assert summary["radius"] == OPTIMIZERS["gsam"]["rho_max"]
        assert summary["rho_start"] == pytest.approx(OPTIMIZERS["gsam"]["rho_max"])
        assert summary["rho_end"] == pytest.approx(OPTIMIZERS["gsam"]["rho_min"])
        assert summary["passes_per_step"] == summary["fwd_bwd_passes"] / summary["steps"]
    gather(tmp_path)
    import pandas as pd

    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert runs.loc[0, "probe_h_rho0.05"] == pytest.approx(summary["probe_h_rho0.05"])
    assert runs.loc[0, "data.label_noise"] == 0.3
    history = pd.read_parquet(tmp_path / "history.parquet")
    if name == "gsam":
        assert history["cos"].between(-1, 1).all() and (history["grad_norm"] > 0).all()


def test_new_keys_at_their_defaults_keep_earlier_run_ids():
    # A run recorded before probes and label noise existed: its config.yaml and its id.
    from pathlib import Path

    import yaml

    run_dir = next((Path(__file__).parents[2] / "results" / "quick" / "runs").iterdir())
    text = (run_dir / "config.yaml").read_text()
    recorded = text.splitlines()[0].split(": ")[1]
    assert run_id(config_from_dict(yaml.safe_load(text))) == recorded
    changed = yaml.safe_load(text)
    changed["eval"]["probe_rhos"] = [0.03]
    assert run_id(config_from_dict(changed)) != recorded
    assert read_json(run_dir / "summary.json")["run_id"] == recorded
