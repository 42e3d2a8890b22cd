"""The paper's published numbers, as data, so reports can print them beside ours.

The CSV files in `gsam_repro/report/data/` each start with a `# source: ...` line naming where the
numbers come from. Model keys follow the paper's rows (resnet50, vit_s32, mixer_b16, ...);
`model_key` maps timm model names (vit_small_patch32_224, mixer_b16_224, ...) onto them.
Methods are "vanilla" (SGD for ResNets, AdamW for ViT and Mixer), "sam" and "gsam".
"""

from __future__ import annotations

import functools
import io
import re
from importlib import resources

import pandas as pd

TABLE1_DATASETS = ("imagenet", "imagenet_real", "imagenet_v2", "imagenet_r", "imagenet_c")
TABLE1_METHODS = ("vanilla", "sam", "gsam")
DATASET_LABELS = {
    "imagenet": "ImageNet",
    "imagenet_real": "ImageNet-Real",
    "imagenet_v2": "ImageNet-V2",
    "imagenet_r": "ImageNet-R",
    "imagenet_c": "ImageNet-C",
}
# Optimizer names whose runs count as the paper's "vanilla" column.
VANILLA_OPTIMIZERS = ("sgd", "adamw", "adam", "vanilla")

_TIMM_VIT = re.compile(r"^vit_(small|base|tiny|large)_patch(\d+)")
_TIMM_MIXER = re.compile(r"^mixer_([sbl])(\d+)")


def _read(name: str) -> tuple[pd.DataFrame, str]:
    text = resources.files("gsam_repro.report").joinpath("data", name).read_text()
    comments = [line for line in text.splitlines() if line.startswith("#")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    source = " ".join(line.lstrip("#").strip().removeprefix("source:").strip() for line in comments)
    return pd.read_csv(io.StringIO(body)), source


@functools.cache
def _cached(name: str) -> tuple[pd.DataFrame, str]:
    return _read(name)


def source(table: str) -> str:
    """Where a table's numbers come from: "table1", "table4" or "cifar10_wrn16_8"."""
    files = {"table1": "table1_imagenet.csv", "table4": "table4_hparams.csv",
             "cifar10_wrn16_8": "cifar10_wrn16_8.csv"}
    if table not in files:
        raise KeyError(f"unknown paper table {table!r}; choose from {', '.join(files)}")
    return _cached(files[table])[1]


def table1() -> pd.DataFrame:
    """Paper Table 1: top-1 accuracy (%) per model and method on the five ImageNet test sets."""
    return _cached("table1_imagenet.csv")[0].copy()


def table4() -> pd.DataFrame:
    """Paper Table 4: the hyper-parameters behind Table 1, one row a model."""
    return _cached("table4_hparams.csv")[0].copy()


def cifar10_wrn16_8() -> pd.DataFrame:
    """CIFAR-10 WideResNet-16-8 test errors (%) published with the official code (single runs)."""
    return _cached("cifar10_wrn16_8.csv")[0].copy()


def models() -> list[str]:
    """The paper's Table 1 model keys, in the paper's order."""
    return list(dict.fromkeys(table1()["model"]))


def model_key(name: str | None) -> str | None:
    """The paper's key for a model name (ours, timm's or the paper's), or None if it has none."""
    if not name:
        return None
    key = str(name).strip().lower().replace("-", "_").replace("/", "")
    known = set(models()) | set(cifar10_wrn16_8()["model"])
    if key in known:
        return key
    vit = _TIMM_VIT.match(key)
    if vit:
        size = {"small": "s", "base": "b", "tiny": "t", "large": "l"}[vit.group(1)]
        key = f"vit_{size}{vit.group(2)}"
    mixer = _TIMM_MIXER.match(key)
    if mixer:
        key = f"mixer_{mixer.group(1)}{mixer.group(2)}"
    key = {"wide_resnet16_8": "wrn16_8", "wrn_16_8": "wrn16_8"}.get(key, key)
    return key if key in known else None


def method_key(optimizer: str | None) -> str | None:
    """The paper's method column for an optimizer name: vanilla, sam, gsam (else None)."""
    if not optimizer:
        return None
    name = str(optimizer).strip().lower()
    if name in VANILLA_OPTIMIZERS:
        return "vanilla"
    if name in ("sam", "gsam"):
        return name
    return None


def lookup(model: str, method: str, dataset: str = "imagenet") -> float | None:
    """The paper's Table 1 accuracy (%) for a model and method, or None when it has none.

    `model` may be a timm name; `method` may be an optimizer name (sgd/adamw count as vanilla)."""
    key, column = model_key(model), method_key(method)
    if dataset not in TABLE1_DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; choose from {', '.join(TABLE1_DATASETS)}")
    if key is None or column is None:
        return None
    rows = table1()
    match = rows[(rows["model"] == key) & (rows["method"] == column)]
    return None if match.empty else float(match.iloc[0][dataset])


def cifar10_error(model: str, optimizer: str) -> float | None:
    """The published CIFAR-10 test error (%) for a model and optimizer (sgd, sam, asam, gsam)."""
    key = model_key(model)
    rows = cifar10_wrn16_8()
    match = rows[(rows["model"] == key) & (rows["method"] == str(optimizer).lower())]
    return None if match.empty else float(match.iloc[0]["test_error_pct"])


def hparams(model: str) -> dict | None:
    """Table 4's hyper-parameters for a model as a dict (rho_max, rho_min, alpha, lr_max, ...)."""
    key = model_key(model)
    rows = table4()
    match = rows[rows["model"] == key]
    if match.empty:
        return None
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in match.iloc[0].items()}
