"""What a user sees when something is wrong: one clear line, exit code 2, nothing written."""

from __future__ import annotations

import pickle

import pytest
import yaml
from train_testkit import read_json, smoke_tree

from gsam_repro.cli import main
from gsam_repro.train import config_from_dict, run, run_id
from gsam_repro.train import loop as train_loop


def _train(tmp_path, capsys, tree: dict, *overrides: str) -> tuple[int, str]:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    code = main(["train", str(config_path), "--out", str(tmp_path / "out"), *overrides])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("override, expected", [
    ("optimizer.rho_mx=0.1", "optimizer.rho_mx: unknown key; did you mean optimizer.rho_max?"),
    ("optimiser.lr=0.1", "optimiser: unknown key; did you mean optimizer?"),
    ("optimizer.lr=fast", "optimizer.lr: expected a number, got 'fast'"),
    ("data.batch_size=0", "data.batch_size: must be >= 1, got 0"),
    ("schedule.decay=cosin", "'cosin' is not one of linear, cosine, constant; did you mean "
                             "cosine?"),
    ("train.precision=fp8", "train.precision: 'fp8' is not one of fp32, bf16, fp16"),
])
def test_bad_config_values_name_the_key_and_write_nothing(tmp_path, capsys, override,
                                                          expected):
    code, err = _train(tmp_path, capsys, smoke_tree(), override)
    assert code == 2
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_unknown_key_in_the_file_names_its_line(tmp_path, capsys):
    tree = smoke_tree()
    tree["train"]["determinstic"] = True
    code, err = _train(tmp_path, capsys, tree)
    line = next(i for i, text in enumerate((tmp_path / "config.yaml").read_text().splitlines(), 1)
                if "determinstic" in text)
    assert code == 2 and f"config.yaml:{line}: train.determinstic" in err
    assert "did you mean train.deterministic?" in err


def test_show_prints_the_resolved_config_and_its_run_id(tmp_path, capsys):
    tree = smoke_tree()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    assert main(["train", "--show", str(config_path), "--out", str(tmp_path / "out"),
                 "optimizer.lr=0.2"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"# run_id: {run_id(config_from_dict(tree, ['optimizer.lr=0.2']))}")
    assert yaml.safe_load(shown)["optimizer"]["lr"] == 0.2
    assert not (tmp_path / "out").exists()


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, err = _train(tmp_path, capsys, smoke_tree(data={"name": "cifar10", "root": str(missing),
                                                          "image_size": None}))
    assert code == 2
    assert str(missing / "cifar-10-batches-py") in err and "data.download=true" in err
    assert not (tmp_path / "out").exists()


def test_missing_imagefolder_says_what_it_expected(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, smoke_tree(data={"name": "imagefolder",
                                                          "root": str(tmp_path / "images")}))
    assert code == 2 and "is not an ImageFolder tree" in err
    assert str(tmp_path / "images" / "train") in err


def test_unknown_model_suggests_close_names(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, smoke_tree(model={"name": "resnet18_cifr"}))
    assert code == 2
    assert "unknown model 'resnet18_cifr'" in err and "resnet18_cifar" in err
    assert not (tmp_path / "out").exists()


def test_a_batch_larger_than_the_data_is_refused(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, smoke_tree(data={"batch_size": 512}))
    assert code == 2
    assert "data.batch_size = 512 is larger than the training set (256 images)" in err
    assert not (tmp_path / "out").exists()


def test_an_optimizer_argument_that_does_not_apply_is_refused(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, smoke_tree(), "optimizer.alpha=0.1")
    assert code == 2 and "alpha" in err
    assert not (tmp_path / "out").exists()


def test_an_out_dir_holding_another_run_is_refused_and_left_alone(tmp_path, capsys):
    tree = smoke_tree(schedule={"epochs": 1})
    first = run(config_from_dict(tree), tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    code, err = _train(tmp_path, capsys, tree, "optimizer.lr=0.2")
    assert code == 2
    assert f"holds run {first['run_id']}" in err and "never mixed" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_a_non_finite_loss_ends_the_run_as_diverged_without_a_traceback(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, smoke_tree(schedule={"epochs": 3}), "optimizer.lr=1e6")
    assert code == 0
    assert "diverged at epoch 1" in err and "Traceback" not in err
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0
    assert summary["test_acc"] is None and summary["hessian_max_eig"] is None
    assert not (tmp_path / "out" / "failed.json").exists()


def test_an_error_mid_run_leaves_failed_json_and_a_later_attempt_clears_it(tmp_path,
                                                                            monkeypatch):
    config = config_from_dict(smoke_tree(schedule={"epochs": 1}))

    def broken_epoch(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(train_loop, "train_epoch", broken_epoch)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(config, tmp_path)
    failed = read_json(tmp_path / "failed.json")
    assert failed["error"] == "RuntimeError: disk on fire"
    assert "broken_epoch" in failed["traceback"]
    assert not (tmp_path / "summary.json").exists()

    monkeypatch.undo()
    assert run(config, tmp_path)["status"] == "done"
    assert not (tmp_path / "failed.json").exists()


def test_a_cifar_folder_without_test_batch_is_reported_missing(tmp_path, capsys):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": [], b"labels": []}, handle)
    code, err = _train(tmp_path, capsys, smoke_tree(data={"name": "cifar10",
                                                          "root": str(tmp_path / "cifar")}))
    assert code == 2 and "no cifar10 data" in err and "test_batch" in err


def test_an_override_after_show_is_applied(tmp_path, capsys):
    tree = smoke_tree()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    assert main(["train", str(config_path), "--out", str(tmp_path / "out"), "--show",
                 "optimizer.lr=0.3", "seed=4"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optimizer"]["lr"] == 0.3 and shown["seed"] == 4
    with pytest.raises(SystemExit):  # an unknown option is still an argparse error
        main(["train", str(config_path), "--out", str(tmp_path / "out"), "--show", "--shwo"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "plan"])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, capsys, monkeypatch, command):
    """`... | head`: the pipe's reader has gone before the output is written."""
    import os
    import sys

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(smoke_tree()))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": smoke_tree(), "seeds": 300}))
    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = open(write_end, "w")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", stdout)
    args = (["train", str(config_path), "--out", str(tmp_path / "out"), "--show"]
            if command == "train" else ["sweep", "plan", str(spec), "--all"])
    try:
        assert main(args) == 141
    finally:
        stdout.close()  # flushes into /dev/null now: no second error
    assert capsys.readouterr().err == ""
