"""User optimizers get the built-ins' argument checks: a registered or path-given class is read
through its signature (following **kwargs up to its parent, and a sharpness-aware class's on to
its base optimizer), and a keyword nobody takes is an ArgumentError naming it, never a raw
torch TypeError; `check_arguments` makes that check without building anything."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import torch

from gsam_repro.optim import SharpnessAware, create_optimizer, register_optimizer
from gsam_repro.optim.registry import BUILT_INS, ArgumentError, check_arguments


@register_optimizer("test_checks_sam_like")
class RadiusNamedR(SharpnessAware):
    """A user's sharpness-aware class whose radius has its own name."""

    def __init__(self, params, base_optimizer=torch.optim.SGD, *, r=0.05, **kwargs):
        super().__init__(params, base_optimizer, rho_max=r, rho_name="r", **kwargs)


def _params():
    return [torch.nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize(("kwargs", "key", "text"), [
    ({"rr": 0.1}, "rr", "did you mean r?"),
    ({"betas": [0.9, 0.99]}, "betas", "does not apply"),  # SGD, the default base, has no betas
    ({"base": "adamw", "momentum": 0.9}, "momentum", "does not apply"),
])
def test_a_registered_sharpness_aware_class_is_checked_against_its_base(kwargs, key, text):
    for check in (lambda: check_arguments("test_checks_sam_like", lr=0.1, **kwargs),
                  lambda: create_optimizer("test_checks_sam_like", _params(), lr=0.1, **kwargs)):
        with pytest.raises(ArgumentError) as caught:
            check()
        assert caught.value.key == key and text in str(caught.value)


def test_a_registered_class_takes_its_own_and_its_bases_keywords():
    opt = create_optimizer("test_checks_sam_like", _params(), lr=0.1, r=0.2, base="adamw",
                           betas=[0.8, 0.9], weight_decay=0.1, lr_max=0.1)
    assert opt.rho_max == 0.2 and isinstance(opt.base_optimizer, torch.optim.AdamW)
    check_arguments("test_checks_sam_like", lr=0.1, r=0.2, momentum=0.9, nesterov=True)


def test_a_path_given_class_is_checked_up_its_parents(tmp_path, monkeypatch):
    (tmp_path / "my_opt.py").write_text(textwrap.dedent('''
        import torch

        class HalfStepSGD(torch.optim.SGD):
            def __init__(self, params, lr=0.1, **kwargs):
                super().__init__(params, lr=lr / 2, **kwargs)
    '''))
    monkeypatch.chdir(tmp_path)
    check_arguments("my_opt.py:HalfStepSGD", lr=0.1, momentum=0.9, nesterov=False)
    with pytest.raises(ArgumentError) as caught:
        check_arguments("my_opt.py:HalfStepSGD", lr=0.1, momentun=0.9)
    assert caught.value.key == "momentun" and "did you mean momentum?" in str(caught.value)
    with pytest.raises(ArgumentError):
        create_optimizer("my_opt.py:HalfStepSGD", _params(), lr=0.1, momentun=0.9)


def test_each_built_in_is_one_table_row_its_class_accepts():
    for name, spec in BUILT_INS.items():
        if spec.cls is None:
            continue
        accepted = inspect.signature(spec.cls.__init__).parameters
        assert set(spec.own) <= set(accepted), name
        assert spec.radius in spec.own, name
        opt = create_optimizer(name, _params(), lr=0.1)
        assert type(opt) is spec.cls
        assert opt.rho_max == spec.own[spec.radius]  # the table's default radius is used


@pytest.mark.parametrize(("name", "kwargs", "key"), [
    ("sgd", {"betas": [0.9, 0.9]}, "betas"), ("adamw", {"momentum": 0.9}, "momentum"),
    ("sam", {"base": "adamw", "nesterov": True}, "nesterov"), ("gsam", {"rho": 0.1}, "rho"),
    ("weighted", {"alpha": 0.1}, "alpha"), ("sam", {"base": "adam"}, "base"),
])
def test_built_ins_refuse_keywords_they_do_not_take_by_key(name, kwargs, key):
    with pytest.raises(ArgumentError) as caught:
        check_arguments(name, lr=0.1, **kwargs)
    assert caught.value.key == key
