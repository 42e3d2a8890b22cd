"""Datasets and loaders: cifar10/100, imagefolder, digits, synthetic; a GPU-resident loader.

`build_data(config.data, ...)` is the one entry point: it loads a source, carves out the fixed
train / val / test subsets and returns a `DataBundle` of loaders that yield batches on the
training device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from gsam_repro.errors import UsageError

# The subsets (train_size, val_size, test_size) come from a permutation with this fixed seed,
# so every seed and every optimizer of a sweep trains and validates on the same images.
SUBSET_SEED = 1234

__all__ = ["DataBundle", "build_data", "flip_labels", "SUBSET_SEED"]


@dataclass
class DataBundle:
    """Loaders plus what the model and the run record need to know about the data."""

    train: Any  # yields augmented (x, y) batches on the device; set_epoch(epoch) before each
    test: Any
    val: Any | None
    hessian: Any  # un-augmented training batches in a fixed order (first N used)
    num_classes: int
    channels: int
    image_size: int
    train_examples: int
    test_examples: int
    val_examples: int
    classes: list[str]
    loader: str  # "gpu" (device-resident arrays) or "torch" (DataLoader workers)
    # data.label_noise > 0: which training images (in `hessian` order) had their label flipped,
    # and their clean labels; the loaders hold the noisy ones.
    flipped: np.ndarray | None = None
    clean_labels: np.ndarray | None = None


# The label-noise draw mixes this constant with data.label_noise_seed, never with the run's seed:
# every optimizer and seed of a sweep trains on the same noisy labels.
LABEL_NOISE_SEED = 4321


def flip_labels(labels: np.ndarray, fraction: float, num_classes: int,
                noise_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric label noise: round(fraction * N) labels, chosen uniformly, each replaced by a
    class drawn uniformly from the other num_classes - 1. Returns (noisy labels, flipped mask)."""
    rng = np.random.default_rng([LABEL_NOISE_SEED, noise_seed])
    count = int(round(fraction * len(labels)))
    chosen = rng.permutation(len(labels))[:count]
    shift = rng.integers(1, num_classes, size=count)  # 1..C-1: never the same class
    noisy = labels.copy()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[chosen] = True
    return noisy, flipped


def _subset_indices(total: int, val_size: int, train_size: int | None,
                    what: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed val and train index sets drawn from `total` examples (same for every run)."""
    wanted = val_size + (train_size or 0)
    if wanted > total or (train_size is None and val_size >= total):
        raise UsageError(
            f"data.train_size + data.val_size = {wanted} is more than the {total} {what} images"
            if train_size else
            f"data.val_size = {val_size} leaves no training images (the set has {total})"
        )
    permutation = np.random.default_rng(SUBSET_SEED).permutation(total)
    val = np.sort(permutation[:val_size])
    rest = permutation[val_size:]
    train = np.sort(rest[:train_size] if train_size else rest)
    return train, val


def _test_indices(total: int, test_size: int | None) -> np.ndarray | None:
    if test_size is None:
        return None
    if test_size > total:
        raise UsageError(f"data.test_size = {test_size} is more than the {total} test images")
    permutation = np.random.default_rng(SUBSET_SEED + 1).permutation(total)
    return np.sort(permutation[:test_size])


def load_source(cfg, num_classes: int | None):
    """The configured source with both splits, before subsetting."""
    from gsam_repro.data import sources

    if cfg.name in ("cifar10", "cifar100"):
        return sources.load_cifar(cfg.name, cfg.root, cfg.download)
    if cfg.download:
        raise UsageError(f"data.download: only cifar10 and cifar100 can be downloaded, "
                         f"not {cfg.name}")
    if cfg.name == "digits":
        return sources.load_digits(cfg.image_size)
    if cfg.name == "synthetic":
        return sources.load_synthetic(num_classes or 10, cfg.image_size, cfg.train_size,
                                      cfg.test_size, cfg.val_size)
    if cfg.name == "imagefolder":
        return sources.load_imagefolder(cfg.root, cfg.image_size, cfg.loader,
                                        cfg.cache_dir, cfg.num_workers)
    raise UsageError(f"data.name: unknown data set {cfg.name!r}")


def build_data(cfg, *, seed: int, device, num_classes: int | None = None,
               channels_last: bool = False) -> DataBundle:
    """Load `cfg` (a DataConfig) and return its loaders on `device`.

    Raises UsageError for what a user can fix: a missing data set (saying where it looked and
    how to get it), subsets larger than the data, a batch larger than the training set."""
    import torch

    from gsam_repro.data.loaders import (
        ArrayLoader,
        BatchWorkerLoader,
        FileLoader,
        channel_stats,
    )
    from gsam_repro.data.sources import Arrays

    device = torch.device(device)
    source = load_source(cfg, num_classes)
    train_index, val_index = _subset_indices(len(source.train), cfg.val_size, cfg.train_size,
                                             "training")
    train_split = source.train.take(train_index)
    flipped = clean_labels = None
    if cfg.label_noise > 0:
        clean_labels = train_split.labels
        noisy, flipped = flip_labels(clean_labels, cfg.label_noise, len(source.classes),
                                     cfg.label_noise_seed)
        train_split = dataclasses.replace(train_split, labels=noisy)
    val_split = source.train.take(val_index) if cfg.val_size else None
    test_index = _test_indices(len(source.test), cfg.test_size)
    test_split = source.test.take(test_index) if test_index is not None else source.test
    if cfg.batch_size > len(train_split):
        raise UsageError(f"data.batch_size = {cfg.batch_size} is larger than the training set "
                         f"({len(train_split)} images); lower it or raise data.train_size")

    arrays = isinstance(source.train, Arrays)
    common = dict(seed=seed, channels_last=channels_last)
    if arrays:
        image_size = cfg.image_size or int(train_split.images.shape[1])
        mean, std = channel_stats(train_split.images)
        common.update(mean=mean, std=std, image_size=image_size)
        if cfg.loader == "torch" and cfg.num_workers > 0:
            loader_kind = "torch"

            def make(split, train, batch_size, **extra):
                return BatchWorkerLoader(split, device=device, num_workers=cfg.num_workers,
                                         batch_size=batch_size, train=train, **common, **extra)
        else:
            loader_kind = "gpu" if device.type != "cpu" else "tensor"

            def make(split, train, batch_size, **extra):
                return ArrayLoader(split, device=device, batch_size=batch_size, train=train,
                                   **common, **extra)
    else:
        image_size = cfg.image_size or 224
        loader_kind = "torch"
        common.update(image_size=image_size, num_workers=cfg.num_workers)

        def make(split, train, batch_size, **extra):
            return FileLoader(split, device=device, batch_size=batch_size, train=train,
                              **common, **extra)

    train = make(train_split, True, cfg.batch_size, augment=cfg.augment, cutout=cfg.cutout)
    test = make(test_split, False, cfg.eval_batch_size)
    val = make(val_split, False, cfg.eval_batch_size) if val_split is not None else None
    if isinstance(train, ArrayLoader):  # the same device tensors, not a second copy
        hessian = train.variant(train=False, shuffle=False, augment="none", cutout=0,
                                max_batches=None)
    else:
        hessian = make(train_split, False, cfg.batch_size)
    return DataBundle(
        train=train, test=test, val=val, hessian=hessian,
        num_classes=len(source.classes), channels=source.channels, image_size=image_size,
        train_examples=len(train_split), test_examples=len(test_split),
        val_examples=len(val_split) if val_split is not None else 0,
        classes=source.classes, loader=loader_kind, flipped=flipped, clean_labels=clean_labels,
    )
