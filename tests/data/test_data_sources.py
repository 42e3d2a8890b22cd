"""Each data source read from tiny data written by the test in its real on-disk format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from gsam_repro.data import build_data, sources
from gsam_repro.errors import UsageError
from gsam_repro.train.config import config_from_dict


def _write_cifar10(root, train_batches: list[tuple[np.ndarray, list[int]]], test) -> None:
    """torchvision's layout: cifar-10-batches-py/data_batch_N, test_batch, batches.meta, each a
    pickled dict with b"data" (N x 3072 uint8, channel planes) and b"labels"."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, (images, labels) in enumerate(train_batches, 1):
        with open(folder / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                         b"labels": labels}, handle)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": test[0].transpose(0, 3, 1, 2).reshape(len(test[0]), -1),
                     b"labels": test[1]}, handle)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names}, handle)


def _images(rng, n: int, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_cifar10_pickle_batches_are_read_pixel_exact(tmp_path):
    rng = np.random.default_rng(0)
    batches = [(_images(rng, 6), [0, 1, 2, 3, 4, 5]), (_images(rng, 4), [6, 7, 8, 9])]
    test = (_images(rng, 3), [9, 0, 1])
    _write_cifar10(tmp_path, batches, test)
    source = sources.load_cifar("cifar10", str(tmp_path), download=False)
    np.testing.assert_array_equal(source.train.images,
                                  np.concatenate([b[0] for b in batches]))
    np.testing.assert_array_equal(source.train.labels, np.arange(10))
    np.testing.assert_array_equal(source.test.images, test[0])
    assert source.classes[0] == "airplane" and source.channels == 3


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 5), ("test", 2)):
        images = _images(rng, n)
        with open(folder / split, "wb") as handle:
            pickle.dump({b"data": images.transpose(0, 3, 1, 2).reshape(n, -1),
                         b"fine_labels": list(range(90, 90 + n)), b"coarse_labels": [0] * n},
                        handle)
    source = sources.load_cifar("cifar100", str(tmp_path), download=False)
    np.testing.assert_array_equal(source.train.labels, [90, 91, 92, 93, 94])
    assert len(source.classes) == 100


def test_cifar_config_trains_on_the_written_batches(tmp_path):
    rng = np.random.default_rng(2)
    _write_cifar10(tmp_path, [(_images(rng, 40), list(rng.integers(0, 10, 40)))],
                   (_images(rng, 12), list(rng.integers(0, 10, 12))))
    config = config_from_dict({"data": {"name": "cifar10", "root": str(tmp_path),
                                        "batch_size": 16, "val_size": 8, "augment": "cifar"}})
    bundle = build_data(config.data, seed=0, device="cpu")
    assert (bundle.train_examples, bundle.val_examples, bundle.test_examples) == (32, 8, 12)
    x, y = next(iter(bundle.train))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)


def _write_imagefolder(root, split: str, per_class: dict[str, list[np.ndarray]]) -> None:
    for name, images in per_class.items():
        (root / split / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / split / name / f"{i:03d}.png")


def test_imagefolder_of_small_images_is_decoded_exactly_and_cached(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    train = {"cat": [_images(rng, 1, 12)[0] for _ in range(3)],
             "dog": [_images(rng, 1, 12)[0] for _ in range(2)]}
    test = {"cat": [_images(rng, 1, 12)[0]], "dog": [_images(rng, 1, 12)[0]]}
    _write_imagefolder(tmp_path / "tree", "train", train)
    _write_imagefolder(tmp_path / "tree", "val", test)
    cache = tmp_path / "cache"
    source = sources.load_imagefolder(str(tmp_path / "tree"), None, "auto", str(cache))
    assert source.classes == ["cat", "dog"]
    np.testing.assert_array_equal(source.train.images, np.stack(train["cat"] + train["dog"]))
    np.testing.assert_array_equal(source.train.labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(source.test.images, np.stack(test["cat"] + test["dog"]))
    assert len(list(cache.glob("*.npz"))) == 2

    def no_decoding(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(sources, "_decode", no_decoding)
    again = sources.load_imagefolder(str(tmp_path / "tree"), None, "auto", str(cache))
    np.testing.assert_array_equal(again.train.images, source.train.images)


def test_imagefolder_cache_notices_changed_files(tmp_path):
    rng = np.random.default_rng(4)
    tree = tmp_path / "tree"
    _write_imagefolder(tree, "train", {"a": [_images(rng, 1, 8)[0]], "b": [_images(rng, 1, 8)[0]]})
    _write_imagefolder(tree, "test", {"a": [_images(rng, 1, 8)[0]], "b": [_images(rng, 1, 8)[0]]})
    sources.load_imagefolder(str(tree), None, "auto", str(tmp_path / "cache"))
    replacement = _images(rng, 1, 8)[0]
    Image.fromarray(replacement).save(tree / "train" / "b" / "001.png")
    reloaded = sources.load_imagefolder(str(tree), None, "auto", str(tmp_path / "cache"))
    np.testing.assert_array_equal(reloaded.train.images[-1], replacement)
    assert len(reloaded.train) == 3


def test_imagefolder_of_big_images_streams_from_disk(tmp_path):
    rng = np.random.default_rng(5)
    _write_imagefolder(tmp_path, "train", {"a": [_images(rng, 1, 80)[0] for _ in range(4)],
                                           "b": [_images(rng, 1, 80)[0] for _ in range(4)]})
    _write_imagefolder(tmp_path, "val", {"a": [_images(rng, 1, 80)[0]],
                                         "b": [_images(rng, 1, 80)[0]]})
    config = config_from_dict({"data": {"name": "imagefolder", "root": str(tmp_path),
                                        "image_size": 72, "batch_size": 4,
                                        "augment": "inception"}})
    bundle = build_data(config.data, seed=0, device="cpu")
    assert bundle.loader == "torch"
    batches = list(bundle.train)
    assert len(batches) == 2 and batches[0][0].shape == (4, 3, 72, 72)
    x, y = next(iter(bundle.test))
    assert x.shape == (2, 3, 72, 72) and y.tolist() == [0, 1]


def test_digits_are_the_bundled_8x8_images_upsampled(tmp_path):
    from sklearn.datasets import load_digits

    source = sources.load_digits(image_size=None)
    assert len(source.train) + len(source.test) == 1797 and source.channels == 1
    assert source.train.images.shape[1:] == (8, 8, 1)
    first = load_digits().images[0]
    np.testing.assert_array_equal(source.train.images[0, :, :, 0],
                                  np.round(first * 255 / 16).astype(np.uint8))
    bigger = sources.load_digits(image_size=32)
    assert bigger.train.images.shape[1:] == (32, 32, 1)
    # bilinear upsampling keeps the mean brightness of each image
    assert abs(float(bigger.train.images[0].mean()) - float(source.train.images[0].mean())) < 4


def test_synthetic_data_are_deterministic_and_learnable():
    first = sources.load_synthetic(10, 16, 600, 200, 0)
    second = sources.load_synthetic(10, 16, 600, 200, 0)
    np.testing.assert_array_equal(first.train.images, second.train.images)
    assert not np.array_equal(first.train.images[:200], first.test.images)

    def shift_invariant(images: np.ndarray) -> np.ndarray:  # Fourier magnitudes
        spectrum = np.fft.fft2(images.astype(float) - 128, axes=(1, 2))
        return np.abs(spectrum).reshape(len(images), -1)

    # the class shows through the shifts and noise: a nearest-class-mean classifier on
    # shift-invariant features beats chance (10 %) by far, so a CNN has something to learn
    x = shift_invariant(first.train.images)
    means = np.stack([x[first.train.labels == c].mean(axis=0) for c in range(10)])
    x_test = shift_invariant(first.test.images)
    predicted = np.argmin(((x_test[:, None] - means[None]) ** 2).sum(axis=2), axis=1)
    assert np.mean(predicted == first.test.labels) > 0.6


def test_subsets_are_disjoint_and_the_same_for_every_seed():
    tree = {"data": {"name": "synthetic", "train_size": 100, "val_size": 30, "test_size": 50,
                     "image_size": 8, "batch_size": 10}}
    bundles = [build_data(config_from_dict({**tree, "seed": seed}).data, seed=seed, device="cpu")
               for seed in (0, 1)]
    for bundle in bundles:
        assert (bundle.train_examples, bundle.val_examples, bundle.test_examples) == (100, 30, 50)
    train = [b.train.images.flatten(1) for b in bundles]
    val = [b.val.images.flatten(1) for b in bundles]
    assert all(a.equal(b) for a, b in zip(train[0], train[1], strict=True))
    assert all(a.equal(b) for a, b in zip(val[0], val[1], strict=True))
    train_rows = {tuple(row.tolist()) for row in train[0]}
    assert not train_rows & {tuple(row.tolist()) for row in val[0]}


@pytest.mark.parametrize("data, message", [
    ({"train_size": 300, "val_size": 0}, "data.batch_size = 400 is larger than the training set"),
    ({"train_size": 2000, "val_size": 200, "name": "digits"}, "more than the 1438 training"),
    ({"test_size": 500, "name": "digits"}, "data.test_size = 500 is more than the 359 test"),
])
def test_sizes_beyond_the_data_are_usage_errors(data, message):
    config = config_from_dict({"data": {"name": "synthetic", "batch_size": 400, **data}})
    with pytest.raises(UsageError, match=message):
        build_data(config.data, seed=0, device="cpu")


class _Payload:
    """What a crafted batch file holds: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_cifar_batch_is_refused_without_running_its_payload(tmp_path):
    rng = np.random.default_rng(0)
    _write_cifar10(tmp_path, [(_images(rng, 4), [0, 1, 2, 3])], (_images(rng, 2), [0, 1]))
    marker = tmp_path / "payload-ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(batch, "wb") as handle:
        pickle.dump({b"data": _Payload(marker), b"labels": [0]}, handle)
    with pytest.raises(UsageError) as err:
        sources.load_cifar("cifar10", str(tmp_path), download=False)
    assert str(batch) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


def test_cifar_batches_of_numpy_scalars_and_either_numpy_module_name_load(tmp_path):
    rng = np.random.default_rng(1)
    labels = list(rng.integers(0, 10, 4))  # numpy int64 scalars, as re-pickled copies hold
    _write_cifar10(tmp_path, [(_images(rng, 4), labels)], (_images(rng, 2), [0, 1]))
    source = sources.load_cifar("cifar10", str(tmp_path), download=False)
    assert source.train.labels.tolist() == [int(x) for x in labels]
    # numpy 1 wrote "numpy.core.multiarray", numpy 2 writes "numpy._core.multiarray"
    data = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [3]}, protocol=2)
    for old, new in ((b"numpy._core.multiarray", b"numpy.core.multiarray"),
                     (b"numpy.core.multiarray", b"numpy._core.multiarray")):
        path = tmp_path / "swapped"
        path.write_bytes(data.replace(old, new))
        assert sources._unpickle(path)[b"labels"] == [3]
