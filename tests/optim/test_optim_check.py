"""`gsam-repro check`: every built-in passes, and each deliberately broken optimizer below fails
exactly the property it breaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gsam_repro.cli import main
from gsam_repro.optim import SAM, register_optimizer
from gsam_repro.optim.check import FAIL, PROPERTIES, check_optimizer

BUILT_INS = [
    ("sgd", {}), ("adamw", {}), ("sam", {"rho": 0.1}), ("gsam", {"alpha": 0.3}),
    ("weighted", {"lam": 0.5}), ("sam", {"adaptive": "paper", "momentum": 0.9}),
    ("sam", {"base": "adamw"}), ("gsam", {"every": 2}), ("weighted", {"looksam": 3}),
    ("sam", {"switch_prob": 0.5}), ("gsam", {"start_fraction": 0.5, "m": 4}),
]


@pytest.mark.parametrize(("name", "options"), BUILT_INS, ids=[
    f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in BUILT_INS])
def test_every_built_in_passes(name, options):
    results = check_optimizer(name, options)
    assert [r.name for r in results] == list(PROPERTIES)
    assert [r for r in results if r.status == FAIL] == []
    assert all(r.evidence for r in results)


def test_the_custom_optimizer_example_passes():
    """RandomSAM declares that it does not perturb along g; under a GradScaler it must still
    skip a step whose g is inf (its first version hid the inf behind its noise)."""
    example = Path(__file__).resolve().parents[2] / "experiments/custom_optimizer/random_sam.py"
    results = {r.name: r for r in check_optimizer(f"{example}:RandomSAM", {"rho": 0.1})}
    assert [r for r in results.values() if r.status == FAIL] == []
    assert "gradient_perturbation = False" in results["quadratic"].evidence
    assert results["grad_scaler"].evidence.endswith("skip the step and lower the scale")


# ------------------------------------------------------------ broken, one property each
class NoBatchNormRestore(SAM):
    """Lets the pass at w + eps update the BatchNorm statistics too."""

    def _restore_batchnorm(self):
        self._batchnorm_saved = ([], [])


class ForgetfulLoad(SAM):
    """Reports a step count in its state_dict that load_state_dict drops."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def step(self, closure=None, grad_scaler=None):
        self.calls += 1
        return super().step(closure, grad_scaler=grad_scaler)

    def state_dict(self):
        return {**super().state_dict(), "calls": self.calls}

    def load_state_dict(self, state_dict):
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "calls"})


class Unseeded(SAM):
    """Adds noise (scaled by rho) from a generator seeded by the OS; keeps it in state_dict."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.noise = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))

    def direction(self, grads_p, grads, dot, grad_p_norm):
        for d in grads_p:
            d.add_(torch.randn(d.shape, generator=self.noise, dtype=d.dtype),
                   alpha=1e-3 * self.rho_now())

    def state_dict(self):
        return {**super().state_dict(), "noise": self.noise.get_state()}

    def load_state_dict(self, state_dict):
        self.noise.set_state(state_dict["noise"])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "noise"})


class HiddenState(SAM):
    """Mixes in the previous direction, kept in an attribute no state_dict holds."""

    previous = None

    def direction(self, grads_p, grads, dot, grad_p_norm):
        if self.previous is not None:
            torch._foreach_add_(grads_p, self.previous, alpha=self.rho_now())
        self.previous = [d.clone() for d in grads_p]


class NotBase(SAM):
    """d = g_p + g/2: twice-ish the base step even at radius 0."""

    def direction(self, grads_p, grads, dot, grad_p_norm):
        torch._foreach_add_(grads_p, grads, alpha=0.5)


class WrongPasses(SAM):
    """Declares one pass a step and makes two."""

    passes_per_step = 1


class LeavesGradients(SAM):
    """Never clears gradients: the next step's first pass accumulates onto the last direction."""

    def zero_grad(self, set_to_none=True):
        pass


class DoubledGap(SAM):
    """Reports twice the surrogate gap it measured."""

    def second_step(self, loss_p=None, grad_scaler=None):
        super().second_step(loss_p, grad_scaler=grad_scaler)
        self.stats["h"] = 2 * self.stats["h"]


class IgnoresScaler(SAM):
    """Drops the GradScaler: perturbs along an inf gradient and never unscales."""

    def step(self, closure=None, grad_scaler=None):
        return super().step(closure)


BROKEN = {
    "batchnorm": NoBatchNormRestore,
    "state_dict": ForgetfulLoad,
    "deterministic": Unseeded,
    "resume": HiddenState,
    "radius0": NotBase,
    "passes": WrongPasses,
    "grad_leak": LeavesGradients,
    "quadratic": DoubledGap,
    "grad_scaler": IgnoresScaler,
}


@pytest.mark.parametrize("prop", list(BROKEN))
def test_a_broken_optimizer_fails_exactly_its_property(prop):
    name = f"check_test_broken_{prop}"
    register_optimizer(name)(BROKEN[prop])
    results = check_optimizer(name, {"rho": 0.1})
    failed = {r.name: r.evidence for r in results if r.status == FAIL}
    assert list(failed) == [prop], failed


def test_the_command_prints_each_property_and_exits_nonzero_on_a_failure(capsys):
    register_optimizer("check_test_broken_passes")(WrongPasses)
    assert main(["check", "check_test_broken_passes", "rho=0.1"]) == 1
    out = capsys.readouterr().out
    assert "fail  passes" in out and "80 passes in 40 steps" in out
    assert main(["check", "sgd", "lr=0.1"]) == 0
    assert "sgd: all properties pass or do not apply" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "nosuch"], "unknown optimizer 'nosuch'"),
    (["check", "sam", "alpha=0.1"], "alpha does not apply to optimizer 'sam'"),
    (["check", "sam", "optimizer.rho=0.1"], "give optimizer keys without a section"),
    (["check", "sgd", "every=2"], "every applies only to sharpness-aware"),
])
def test_bad_input_is_a_usage_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_command_line_parser_does_not_import_torch():
    code = ("import sys, gsam_repro.cli as c; c.build_parser(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
