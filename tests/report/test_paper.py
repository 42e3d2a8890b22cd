"""The paper's numbers ship inside the package, with their source, and look up by any name."""

import csv
from pathlib import Path

import pytest

from gsam_repro.report import paper

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper"


def test_every_packaged_file_names_its_source():
    for table in ("table1", "table4", "cifar10_wrn16_8"):
        assert "ICLR 2022" in paper.source(table) or "GSAM" in paper.source(table)


def test_table1_has_twelve_models_three_methods_five_datasets():
    rows = paper.table1()
    assert len(rows) == 36
    assert set(rows["method"]) == set(paper.TABLE1_METHODS)
    assert list(rows.columns[2:]) == list(paper.TABLE1_DATASETS)
    assert paper.models()[2] == "resnet152"  # the paper's "ResNet512" row


@pytest.mark.skipif(not SHARED.is_dir(), reason="compares against the shared copy when present")
def test_packaged_numbers_equal_the_shared_csv():
    with open(SHARED / "table1_imagenet.csv") as handle:
        for row in csv.DictReader(handle):
            for dataset in paper.TABLE1_DATASETS:
                assert paper.lookup(row["model"], row["method"], dataset) == float(row[dataset])


def test_lookup_maps_timm_and_optimizer_names():
    assert paper.lookup("vit_small_patch32_224", "adamw") == 68.4  # vanilla ViT-S/32
    assert paper.lookup("mixer_b16_224", "gsam", "imagenet_c") == 54.4
    assert paper.lookup("resnet50", "sgd") == 76.0
    assert paper.lookup("small_cnn", "gsam") is None
    assert paper.lookup("resnet50", "weighted") is None
    with pytest.raises(KeyError):
        paper.lookup("resnet50", "gsam", "cifar10")


def test_hparams_and_cifar_numbers():
    assert paper.hparams("resnet152")["alpha"] == 0.005
    assert paper.hparams("vit_base_patch16_224")["rho_min"] == 0.2
    assert paper.hparams("small_cnn") is None
    assert paper.cifar10_error("wrn16_8", "gsam") == 2.45
    assert paper.cifar10_error("wrn16_8", "weighted") is None
