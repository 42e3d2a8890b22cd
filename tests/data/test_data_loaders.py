"""Batched augmentation and the device-resident loader, checked image by image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsam_repro.data import augment
from gsam_repro.data.loaders import ArrayLoader, BatchWorkerLoader, channel_stats
from gsam_repro.data.sources import Arrays


def _batch(n: int = 16, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


def test_pad_crop_gives_a_crop_of_the_zero_padded_image():
    images = _batch()
    cropped = augment.pad_crop(images, 2, torch.Generator().manual_seed(1))
    padded = F.pad(images, (2, 2, 2, 2))
    offsets_seen = set()
    for original, out in zip(padded, cropped, strict=True):  # brute force over all 25 offsets
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(original[:, dy:dy + 8, dx:dx + 8], out)]
        assert matches
        offsets_seen.update(matches)
    assert len(offsets_seen) > 5  # offsets differ between images


def test_random_flip_mirrors_about_half_of_the_images():
    images = _batch(64)
    flipped = augment.random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(out, img.flip(2)) for img, out in zip(images, flipped, strict=True)]
    kept = [torch.equal(out, img) for img, out in zip(images, flipped, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 16 < sum(mirrored) < 48


def test_cutout_zeroes_one_square_of_the_given_size_clipped_by_the_border():
    images = _batch(32, size=10).float() + 1.0  # no zeros before cutout
    out = augment.cutout(images, 4, torch.Generator().manual_seed(0))
    for image, result in zip(images, out, strict=True):
        zero = (result == 0).all(dim=0)
        rows, cols = torch.nonzero(zero, as_tuple=True)
        assert len(rows) > 0
        height = rows.max() - rows.min() + 1
        width = cols.max() - cols.min() + 1
        assert len(rows) == height * width and height <= 4 and width <= 4  # a (clipped) square
        assert torch.equal(result[:, ~zero], image[:, ~zero])
    sizes = [int((r == 0).all(dim=0).sum()) for r in out]
    assert 16 in sizes  # most squares are whole


def test_inception_crop_of_the_whole_image_is_the_image_or_its_mirror():
    images = _batch(8).float()
    out = augment.inception_crop(images, 8, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                                 ratio=(1.0, 1.0))
    for image, result in zip(images, out, strict=True):
        assert (torch.allclose(result, image, atol=1e-3)
                or torch.allclose(result, image.flip(2), atol=1e-3))
    resized = augment.inception_crop(images, 5, torch.Generator().manual_seed(0))
    assert resized.shape == (8, 3, 5, 5)


def _arrays(n: int = 50, size: int = 6) -> Arrays:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # a pixel that names each image
    return Arrays(images, np.arange(n) % 10)


def _loader(arrays: Arrays, **kwargs) -> ArrayLoader:
    mean, std = channel_stats(arrays.images)
    settings = dict(batch_size=8, device=torch.device("cpu"), train=True, mean=mean, std=std,
                    seed=0)
    return ArrayLoader(arrays, **{**settings, **kwargs})


def _ids(loader: ArrayLoader, arrays: Arrays) -> list[int]:
    """Which images a pass yields, read back from the naming pixel."""
    ids = []
    for x, y in loader:
        pixel = (x[:, 0, 0, 0] - loader.shift[0, 0, 0, 0]) / loader.scale[0, 0, 0, 0]
        batch_ids = pixel.round().long().tolist()
        assert y.tolist() == [int(arrays.labels[i]) for i in batch_ids]
        ids.extend(batch_ids)
    return ids


def test_a_training_epoch_visits_distinct_images_in_full_batches_and_reshuffles():
    arrays = _arrays()
    loader = _loader(arrays)
    assert len(loader) == 50 // 8
    loader.set_epoch(1)
    first = _ids(loader, arrays)
    assert len(first) == 48 and len(set(first)) == 48
    loader.set_epoch(1)
    assert _ids(loader, arrays) == first  # the order is a function of (seed, epoch)
    loader.set_epoch(2)
    assert _ids(loader, arrays) != first


def test_an_evaluation_pass_yields_every_image_in_order():
    arrays = _arrays()
    loader = _loader(arrays, train=False)
    assert _ids(loader, arrays) == list(range(50))


def test_normalised_images_have_zero_mean_and_unit_std_per_channel():
    arrays = _arrays(400, size=8)
    x = torch.cat([x for x, _ in _loader(arrays, train=False)])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_worker_processes_yield_the_in_process_batches_when_nothing_is_random_but_order():
    arrays = _arrays()
    in_process = _loader(arrays)
    mean, std = channel_stats(arrays.images)
    workers = BatchWorkerLoader(arrays, device=torch.device("cpu"), num_workers=1, batch_size=8,
                                train=True, mean=mean, std=std, seed=0)
    in_process.set_epoch(3)
    workers.set_epoch(3)
    for (x1, y1), (x2, y2) in zip(in_process, workers, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("augmentation", ["cifar", "inception"])
def test_augmented_batches_keep_their_shape_and_labels(augmentation):
    arrays = _arrays(size=8)
    loader = _loader(arrays, augment=augmentation, cutout=3, channels_last=True)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)
    assert y.shape == (8,)


def test_channel_stats_match_numpy_float_statistics():
    images = np.random.default_rng(7).integers(0, 256, size=(300, 5, 5, 3), dtype=np.uint8)
    images[..., 2] //= 4  # channels with different statistics
    mean, std = channel_stats(images)
    as_float = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 1, 2)), rtol=1e-7)
