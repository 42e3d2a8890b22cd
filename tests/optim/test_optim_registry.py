"""create_optimizer: names, config-style arguments, user optimizers, and every bad argument."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch
from optim_testkit import classification_batch, make_closure, small_mlp

from gsam_repro.optim import (
    GSAM,
    SAM,
    SharpnessAware,
    WeightedSAM,
    available_optimizers,
    create_optimizer,
    register_optimizer,
)


def params():
    return small_mlp().parameters()


def test_builtin_names_build_the_right_classes():
    assert {"sgd", "adamw", "sam", "gsam", "weighted"} <= set(available_optimizers())
    assert type(create_optimizer("sgd", params(), lr=0.1)) is torch.optim.SGD
    assert type(create_optimizer("adamw", params(), lr=0.1)) is torch.optim.AdamW
    assert type(create_optimizer("sam", params(), lr=0.1)) is SAM
    assert type(create_optimizer("gsam", params(), lr=0.1)) is GSAM
    assert type(create_optimizer("weighted", params(), lr=0.1)) is WeightedSAM
    assert create_optimizer("sgd", params(), lr=0.1).passes_per_step == 1
    assert create_optimizer("GSAM", params(), lr=0.1).passes_per_step == 2


def test_config_section_passes_through_with_nones():
    # What the trainer hands over: every optimizer key, None where the config leaves it out.
    section = dict(base=None, lr=0.2, momentum=0.9, nesterov=None, weight_decay=5e-4, betas=None,
                   rho=None, rho_max=0.04, rho_min=0.02, alpha=0.01, lam=None, adaptive=None,
                   grad_clip=None, kwargs={}, lr_max=0.2, lr_min=0.002, model=small_mlp())
    opt = create_optimizer("gsam", section["model"].parameters(), **section)
    assert (opt.rho_max, opt.rho_min, opt.alpha, opt.lr_max, opt.lr_min) == (
        0.04, 0.02, 0.01, 0.2, 0.002)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.2, 0.9, 5e-4)
    assert type(opt.base_optimizer) is torch.optim.SGD

    # Plain SGD takes the same section minus the SAM keys; model, lr_max, lr_min are run facts.
    plain = {**section, "rho_max": None, "rho_min": None, "alpha": None}
    sgd = create_optimizer("sgd", section["model"].parameters(), **plain)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9


def test_adamw_base_and_betas():
    opt = create_optimizer("sam", params(), base="adamw", lr=3e-3, betas=[0.8, 0.95],
                           weight_decay=0.3, rho=0.1)
    assert type(opt.base_optimizer) is torch.optim.AdamW
    assert opt.param_groups[0]["betas"] == (0.8, 0.95)
    assert opt.param_groups[0]["weight_decay"] == 0.3


BAD_ARGUMENTS = [
    ("sam", {"rho": -0.1}, "rho"),
    ("weighted", {"rho": -0.1}, "rho"),
    ("gsam", {"rho_max": -0.1}, "rho_max"),
    ("gsam", {"rho_min": -0.1}, "rho_min"),
    ("gsam", {"rho_max": 0.02, "rho_min": 0.04}, "rho_min"),
    ("gsam", {"alpha": -0.5}, "alpha"),
    ("weighted", {"lam": -1.0}, "lam"),
    ("gsam", {"lr_max": 0.01, "lr_min": 0.1}, "lr_max"),
    ("gsam", {"lr_min": -0.1}, "lr_min"),
    ("sam", {"adaptive": "fisher"}, "adaptive"),
    ("sam", {"adaptive": True}, "adaptive"),
    ("gsam", {"grad_clip": 0.0}, "grad_clip"),
    ("gsam", {"grad_clip": -1.0}, "grad_clip"),
    ("gsam", {"base": "adam"}, "base"),
    ("gsam", {"base": "adamw", "momentum": 0.9}, "momentum"),
    ("sam", {"base": "adamw", "nesterov": True}, "nesterov"),
    ("sam", {"betas": [0.9, 0.99]}, "betas"),
    ("adamw", {"betas": [0.9]}, "betas"),
    ("sgd", {"alpha": 0.1}, "alpha"),
    ("sgd", {"adaptive": False}, "adaptive"),
    ("sgd", {"grad_clip": 1.0}, "grad_clip"),
    ("adamw", {"momentum": 0.9}, "momentum"),
    ("gsam", {"rho": 0.05}, "rho"),
    ("sam", {"lam": 0.1}, "lam"),
    ("sam", {"alpha": 0.1}, "alpha"),
    ("sam", {"model": "resnet"}, "model"),
    ("gsam", {"rhoo_max": 0.1}, "rhoo_max"),
]


@pytest.mark.parametrize(("name", "kwargs", "argument"), BAD_ARGUMENTS)
def test_bad_argument_raises_value_error_naming_it(name, kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{re.escape(argument)}\b"):
        create_optimizer(name, params(), **{"lr": 0.1, **kwargs})


def test_typo_gets_a_hint():
    with pytest.raises(ValueError, match="did you mean rho_max"):
        create_optimizer("gsam", params(), lr=0.1, rhoo_max=0.1)


def test_unknown_name_lists_the_registered_ones_and_the_closest():
    with pytest.raises(ValueError, match=r"^name: .*sgd.*did you mean gsam\?"):
        create_optimizer("gsma", params(), lr=0.1)


def test_missing_lr_is_named():
    with pytest.raises(ValueError, match=r"^lr\b"):
        create_optimizer("sgd", params())


def test_step_without_a_closure_raises():
    opt = create_optimizer("gsam", params(), lr=0.1)
    with pytest.raises(ValueError, match=r"^closure\b"):
        opt.step()


def test_base_optimizer_instance_and_class_are_both_accepted():
    model = small_mlp()
    base = torch.optim.SGD(model.parameters(), lr=0.3)
    opt = SAM(None, base, rho=0.1)
    assert opt.base_optimizer is base and opt.param_groups is base.param_groups
    with pytest.raises(ValueError, match=r"^params\b"):
        SAM(model.parameters(), base)
    with pytest.raises(ValueError, match=r"^base_optimizer\b"):
        SAM(model.parameters(), "sgd")


@register_optimizer("test_sign_descent")
class SignDescent(torch.optim.Optimizer):
    """A user's own optimizer: w <- w - lr * sign(g)."""

    def __init__(self, params, lr=0.01, shrink=0.0):
        super().__init__(params, {"lr": lr, "shrink": shrink})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["shrink"]).add_(p.grad.sign(), alpha=-group["lr"])
        return loss


def test_registered_user_optimizer_gets_its_own_arguments_and_nothing_else():
    model = small_mlp()
    opt = create_optimizer("test_sign_descent", model.parameters(), lr=0.5, shrink=0.1,
                           momentum=None, model=model, lr_max=0.5, lr_min=0.005)
    assert isinstance(opt, SignDescent) and opt.passes_per_step == 1
    assert opt.param_groups[0]["shrink"] == 0.1
    with pytest.raises(ValueError, match=r"^momentum does not apply"):
        create_optimizer("test_sign_descent", model.parameters(), lr=0.5, momentum=0.9)
    # Extra keys from a config's `kwargs:` mapping are merged in.
    opt = create_optimizer("test_sign_descent", model.parameters(), lr=0.5,
                           kwargs={"shrink": 0.2})
    assert opt.param_groups[0]["shrink"] == 0.2


def test_registering_a_second_optimizer_under_a_taken_name_raises():
    with pytest.raises(ValueError, match=r"^name: optimizer 'sgd' is already registered"):
        register_optimizer("sgd")(SignDescent)


def test_dotted_path_to_a_torch_optimizer():
    opt = create_optimizer("torch.optim:RAdam", params(), lr=1e-3, weight_decay=0.0)
    assert type(opt) is torch.optim.RAdam
    with pytest.raises(ValueError, match=r"^name: cannot import"):
        create_optimizer("no_such_package.optim:Thing", params(), lr=0.1)
    with pytest.raises(ValueError, match=r"^name: 'torch.optim' has no attribute"):
        create_optimizer("torch.optim:NoSuchOptimizer", params(), lr=0.1)


def test_dotted_path_to_a_users_sharpness_aware_variant(tmp_path, monkeypatch):
    # A user's SAM variant in their own module, named from YAML as `my_sam:AscentSAM`.
    (tmp_path / "my_sam.py").write_text(textwrap.dedent('''
        import torch
        from gsam_repro.optim import SharpnessAware

        class AscentSAM(SharpnessAware):
            """d = g_p + beta * g."""

            def __init__(self, params, base_optimizer=torch.optim.SGD, *, rho=0.05, beta=0.5,
                         **kwargs):
                super().__init__(params, base_optimizer, rho_max=rho, **kwargs)
                self.beta = beta

            def direction(self, grads_p, grads, dot, grad_p_norm):
                torch._foreach_add_(grads_p, grads, alpha=self.beta)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = small_mlp()
    x, y = classification_batch()
    opt = create_optimizer("my_sam:AscentSAM", model.parameters(), base="sgd", lr=0.1,
                           momentum=0.9, rho=0.1, kwargs={"beta": 0.25}, model=model,
                           lr_max=0.1, lr_min=0.001)
    assert isinstance(opt, SharpnessAware) and opt.passes_per_step == 2
    assert opt.beta == 0.25 and type(opt.base_optimizer) is torch.optim.SGD
    assert opt.param_groups[0]["momentum"] == 0.9
    opt.step(make_closure(model, x, y))
    assert torch.isfinite(opt.stats["h"])
