"""A user's optimizer named by file path (`path/to/file.py:Class`), as YAML configs do."""

import textwrap

import pytest
import torch

from gsam_repro.optim import create_optimizer

USER_FILE = textwrap.dedent(
    '''
    import torch

    class HalfStepSGD(torch.optim.SGD):
        """SGD whose step is half the learning rate: easy to tell apart from SGD."""

        def __init__(self, params, lr=0.1, **kwargs):
            super().__init__(params, lr=lr / 2, **kwargs)
    '''
)


def test_a_class_in_a_python_file_is_found_by_path(tmp_path, monkeypatch):
    (tmp_path / "my_opt.py").write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = create_optimizer("my_opt.py:HalfStepSGD", [w], lr=0.2)
    assert type(opt).__name__ == "HalfStepSGD"
    w.grad = torch.tensor([1.0])
    opt.step()
    assert w.item() == pytest.approx(1.0 - 0.1)  # lr 0.2 halved by the user's class
    # the same file twice is one module (a sweep builds many optimizers in one process)
    again = create_optimizer(f"{tmp_path}/my_opt.py:HalfStepSGD", [w], lr=0.2)
    assert type(again) is type(opt)


def test_a_missing_file_or_class_names_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no such file 'nothere.py'"):
        create_optimizer("nothere.py:X", [torch.nn.Parameter(torch.zeros(1))])
    (tmp_path / "my_opt.py").write_text(USER_FILE)
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        create_optimizer("my_opt.py:Nope", [torch.nn.Parameter(torch.zeros(1))])


@pytest.mark.parametrize("target", ["os:system", "subprocess:Popen", "my_opt.py:make"])
def test_a_path_that_names_no_optimizer_class_is_refused_uncalled(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_opt.py").write_text(USER_FILE + "\ndef make(params, **kwargs):\n"
                                        "    open('called', 'w').close()\n")
    with pytest.raises(ValueError, match="is not a torch.optim.Optimizer subclass"):
        create_optimizer(target, [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert not (tmp_path / "called").exists()
