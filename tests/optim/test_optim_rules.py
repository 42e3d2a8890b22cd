"""Each optimizer argument rule is written once (gsam_repro.optim.rules): the optimizer raises it
when built, and a run config or sweep spec reports the very same message at its key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gsam_repro.errors import ConfigError
from gsam_repro.optim import GSAM, SAM
from gsam_repro.train.config import config_from_dict


def _optimizer_message(cls, **kwargs) -> str:
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError) as caught:
        cls(params, torch.optim.SGD, lr=0.1, **kwargs)
    return str(caught.value)


def test_rho_min_above_rho_max_is_the_optimizers_message_in_a_config():
    message = _optimizer_message(GSAM, rho_max=0.04, rho_min=0.05, lr_min=0.001)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"optimizer": {"name": "gsam", "rho_max": 0.04, "rho_min": 0.05}})
    assert caught.value.key == "optimizer.rho_min"
    assert message in str(caught.value)


@pytest.mark.parametrize("adaptive", [True, "Paper", "nope"])
def test_adaptive_modes_are_the_optimizers_in_a_config(adaptive):
    message = _optimizer_message(SAM, rho=0.05, adaptive=adaptive)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"optimizer": {"name": "sam", "adaptive": adaptive}})
    assert caught.value.key == "optimizer.adaptive"
    assert message in str(caught.value)


@pytest.mark.parametrize("adaptive", [False, None, "paper", "asam"])
def test_every_adaptive_mode_is_taken_by_both(adaptive):
    params = [torch.nn.Parameter(torch.zeros(2))]
    SAM(params, torch.optim.SGD, lr=0.1, adaptive=adaptive)
    assert config_from_dict({"optimizer": {"name": "sam", "adaptive": adaptive}})


def test_run_configs_check_the_rules_without_importing_torch():
    code = ("import sys; from gsam_repro.train.config import config_from_dict; "
            "config_from_dict({'optimizer': {'name': 'gsam'}}); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
