"""The run config: what loads, what is refused, and what the run id depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_testkit import smoke_tree

from gsam_repro.errors import ConfigError
from gsam_repro.train.config import config_from_dict, load_config, run_id, valid_keys


def test_a_good_config_loads_with_defaults_filled_in():
    config = config_from_dict(smoke_tree(optimizer={"name": "gsam", "base": "sgd", "lr": 0.1,
                                                    "rho_max": 0.04, "rho_min": 0.02,
                                                    "alpha": 0.01}))
    assert config.optimizer.name == "gsam" and config.optimizer.rho_max == 0.04
    assert config.data.batch_size == 64 and config.data.augment == "none"
    assert config.lr_min == pytest.approx(0.1 / 100)  # the paper's lr_min = lr_max / 100


def test_dotted_overrides_are_read_as_yaml_values():
    overrides = ["optimizer.lr=5e-2", "data.augment=cifar", "train.deterministic=false",
                 "model.kwargs={width: 8}"]
    config = config_from_dict(smoke_tree(), overrides)
    assert config.optimizer.lr == 0.05 and config.data.augment == "cifar"
    assert config.train.deterministic is False and config.model.kwargs == {"width": 8}


def test_yaml_file_errors_point_at_the_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 0\ndata:\n  name: synthetic\n  batch_size: -3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:4: data.batch_size: must be >= 1, got -3"


@pytest.mark.parametrize("tree, key", [
    ({"optimizer": {"rho_min": 0.5, "rho_max": 0.1}}, "optimizer.rho_min"),
    ({"schedule": {"lr_min": 1.0}}, "schedule.lr_min"),
    ({"data": {"name": "digits", "download": True}}, "data.download"),
    ({"data": {"name": "imagefolder"}}, "data.root"),
    ({"train": {"label_smoothing": 1.0}}, "train.label_smoothing"),
    ({"train": {"device": "gpu"}}, "train.device"),
    ({"seed": "zero"}, "seed"),
])
def test_inconsistent_values_are_refused_by_key(tree, key):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(tree)
    assert caught.value.key == key


def test_run_id_ignores_keys_that_cannot_change_the_result():
    base = config_from_dict(smoke_tree())
    same = config_from_dict(smoke_tree(), ["train.threads=2", "train.log_every=5",
                                           "data.num_workers=3", "data.cache_dir=/tmp/x",
                                           "schedule.lr_min=0.0005"])
    assert run_id(same) == run_id(base)
    assert run_id(config_from_dict(smoke_tree(), ["seed=1"])) != run_id(base)
    assert run_id(config_from_dict(smoke_tree(), ["optimizer.lr=0.1"])) != run_id(base)


def test_every_config_key_is_documented():
    documented = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    missing = [key for key in valid_keys() if f"`{key}`" not in documented]
    assert not missing, f"docs/training.md does not describe {missing}"


@pytest.mark.parametrize("override, key", [
    ("optimizer.lr=.nan", "optimizer.lr"),
    ("optimizer.lr=.inf", "optimizer.lr"),
    ("optimizer.weight_decay=-.inf", "optimizer.weight_decay"),
    ("optimizer.lr=nan", "optimizer.lr"),  # text read as a number must be finite too
    ("optimizer.betas=[0.9, .nan]", "optimizer.betas[1]"),
    ("optimizer.kwargs={eps: .inf}", "optimizer.kwargs.eps"),
])
def test_non_finite_numbers_are_refused_by_key(override, key):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(smoke_tree(), [override])
    assert caught.value.key == key
    assert "finite" in caught.value.message


def test_a_config_file_that_is_not_utf8_names_the_byte_offset_and_exits_2(tmp_path, capsys):
    from gsam_repro.cli import main

    path = tmp_path / "run.yaml"
    path.write_bytes(b"seed: 0\noptimizer:\n  name: s\xe9d\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:3: not UTF-8 text: byte 0xe9 at byte offset 28"
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--show"]) == 2
    assert "byte offset 28" in capsys.readouterr().err
