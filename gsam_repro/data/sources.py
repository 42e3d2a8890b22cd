"""Where images come from: each source returns decoded uint8 arrays, or file lists for big images.

Small-image data sets (CIFAR, digits, synthetic, small ImageFolder trees) are held whole in
memory as `Arrays` (N, H, W, C uint8 plus int64 labels), so one loader serves them all and can
keep them on the GPU. Big-image ImageFolder trees (ImageNet) are returned as `FileList`s and
streamed through a torch DataLoader.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsam_repro.errors import UsageError
from gsam_repro.fsio import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")

# Images up to this side length are decoded once and cached as uint8 arrays.
SMALL_IMAGE_SIDE = 64


@dataclass
class Arrays:
    """A decoded split: images (N, H, W, C) uint8 and labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Arrays:
        return Arrays(self.images[index], self.labels[index])


@dataclass
class FileList:
    """An undecoded split: image paths and their labels (for big images, decoded per batch)."""

    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> FileList:
        return FileList([self.paths[i] for i in index], self.labels[index])


@dataclass
class Source:
    """Both splits of a data set plus what the model needs to know about it."""

    train: Arrays | FileList
    test: Arrays | FileList
    classes: list[str]
    channels: int


# ----------------------------------------------------------------------------- CIFAR


CIFAR_LAYOUT = {
    # name: (folder inside root, train files prefix, test file, label key, meta file, names key)
    "cifar10": ("cifar-10-batches-py", "data_batch_", "test_batch", b"labels", "batches.meta",
                b"label_names"),
    "cifar100": ("cifar-100-python", "train", "test", b"fine_labels", "meta",
                 b"fine_label_names"),
}


def default_root(name: str) -> str:
    """Where a data set is looked for when data.root is not given."""
    return os.path.join("data", name)


# What CIFAR's python-format files (and their re-pickled copies) reference: numpy's array,
# scalar and dtype reconstruction, under numpy 1's and numpy 2's module names, and the codec
# function Python 3 writes bytes with under pickle protocol 2. Everything else they hold
# (dicts, lists, bytes, str, int) are pickle's own opcodes and need no lookup.
_CIFAR_PICKLE_GLOBALS = frozenset({
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})


class _CifarUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch without running code: only the numpy reconstruction functions above
    may be looked up, so a crafted file under data.root cannot call os.system and the like."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR batch "
                                         "never holds")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = _CifarUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError) as err:
        raise UsageError(f"data.root: {path} is not a CIFAR batch file ({err}); it was not "
                         "loaded") from None
    if not isinstance(data, dict):
        raise UsageError(f"data.root: {path} is not a CIFAR batch file (holds a "
                         f"{type(data).__name__}, not a dict); it was not loaded")
    return data


def _cifar_folder(name: str, root: Path) -> Path | None:
    folder, train_prefix, test_file, *_ = CIFAR_LAYOUT[name]
    for candidate in (root / folder, root):
        has_train = any(p.name.startswith(train_prefix) for p in candidate.glob(train_prefix + "*"))
        if has_train and (candidate / test_file).is_file():
            return candidate
    return None


def load_cifar(name: str, root: str | None, download: bool) -> Source:
    """CIFAR-10/100 in torchvision's on-disk (python pickle) format."""
    root_path = Path(root or default_root(name)).expanduser()
    folder = _cifar_folder(name, root_path)
    if folder is None and download:
        import torchvision

        dataset_class = torchvision.datasets.CIFAR10 if name == "cifar10" else (
            torchvision.datasets.CIFAR100)
        try:
            dataset_class(str(root_path), train=True, download=True)
        except Exception as err:  # network or disk problems: one clear line for the user
            raise UsageError(
                f"data.download: could not download {name} into {root_path}: {err}") from None
        folder = _cifar_folder(name, root_path)
    if folder is None:
        subfolder, train_prefix, test_file, *_ = CIFAR_LAYOUT[name]
        raise UsageError(
            f"data.root: no {name} data at {root_path} (looked for "
            f"{root_path / subfolder}/{train_prefix}* and {test_file}, and in {root_path} "
            f"itself). Get it with data.download=true on a machine with internet, or set "
            f"data.root to the folder that holds {subfolder}/"
        )
    _, train_prefix, test_file, label_key, meta_file, names_key = CIFAR_LAYOUT[name]

    def read(files: list[Path]) -> Arrays:
        images, labels = [], []
        for path in files:
            batch = _unpickle(path)
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        return Arrays(np.concatenate(images).transpose(0, 2, 3, 1).copy(),
                      np.concatenate(labels))

    train_files = sorted(p for p in folder.glob(train_prefix + "*") if p.is_file())
    train = read(train_files)
    test = read([folder / test_file])
    num_classes = 10 if name == "cifar10" else 100
    classes = [str(i) for i in range(num_classes)]
    if (folder / meta_file).is_file():
        names = _unpickle(folder / meta_file).get(names_key)
        if names and len(names) == num_classes:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return Source(train, test, classes, channels=3)


# ----------------------------------------------------------------------------- digits


def load_digits(image_size: int | None) -> Source:
    """scikit-learn's bundled 8x8 digits (1,797 images), split 1,437 train / 360 test.

    The split is fixed (every 5th image is a test image), so it is the same on every machine."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.clip(bunch.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    if image_size and image_size != images.shape[1]:
        images = resize_arrays(images, image_size)
    is_test = np.arange(len(labels)) % 5 == 4
    return Source(
        Arrays(images[~is_test], labels[~is_test]),
        Arrays(images[is_test], labels[is_test]),
        classes=[str(i) for i in range(10)],
        channels=1,
    )


def resize_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) uint8 images to size x size."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=size < images.shape[1])
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# ----------------------------------------------------------------------------- synthetic


SYNTHETIC_TRAIN = 2048
SYNTHETIC_TEST = 512
SYNTHETIC_SEED = 20220101  # the data never depend on the run's seed


def synthetic_arrays(num_images: int, num_classes: int, image_size: int, split_seed: int,
                     channels: int = 3) -> Arrays:
    """Deterministic, learnable images: a class-specific colour grating, shifted, plus noise.

    Each class has its own orientation, frequency and colour; each image shifts its class
    pattern by up to a quarter of the image, varies its contrast and adds Gaussian noise, so a
    small CNN must learn the pattern rather than memorise pixels."""
    prototypes_rng = np.random.default_rng(SYNTHETIC_SEED)
    size = image_size
    yy, xx = np.mgrid[0:2 * size, 0:2 * size].astype(np.float64) / size
    prototypes = np.empty((num_classes, 2 * size, 2 * size, channels))
    for c in range(num_classes):
        angle = np.pi * c / num_classes + prototypes_rng.uniform(0, 0.2)
        frequency = 1.5 + 2.5 * prototypes_rng.uniform()
        phase = prototypes_rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * frequency * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        colour = prototypes_rng.uniform(-1.0, 1.0, size=channels)
        prototypes[c] = wave[..., None] * colour
    rng = np.random.default_rng([SYNTHETIC_SEED, split_seed])
    labels = rng.integers(0, num_classes, size=num_images)
    shifts = rng.integers(0, size // 2 + 1, size=(num_images, 2))
    contrast = rng.uniform(0.5, 1.0, size=num_images)
    images = np.empty((num_images, size, size, channels), dtype=np.uint8)
    for i in range(num_images):
        dy, dx = shifts[i]
        pattern = prototypes[labels[i], dy:dy + size, dx:dx + size]
        noise = rng.normal(0.0, 0.9, size=pattern.shape)
        pixels = 128 + 50 * (contrast[i] * pattern + noise)
        images[i] = np.clip(pixels, 0, 255).astype(np.uint8)
    return Arrays(images, labels.astype(np.int64))


def load_synthetic(num_classes: int, image_size: int | None, train_size: int | None,
                   test_size: int | None, val_size: int) -> Source:
    """Synthetic data sized to what the config asks for (defaults 2,048 train / 512 test)."""
    size = image_size or 32
    if size < 4:
        raise UsageError(f"data.image_size: synthetic images need at least 4 pixels, got {size}")
    num_train = (train_size or SYNTHETIC_TRAIN) + val_size
    train = synthetic_arrays(num_train, num_classes, size, split_seed=0)
    test = synthetic_arrays(test_size or SYNTHETIC_TEST, num_classes, size, split_seed=1)
    return Source(train, test, [f"class{i}" for i in range(num_classes)], channels=3)


# ----------------------------------------------------------------------------- ImageFolder


def _list_folder(split_dir: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Classes (sorted folder names), image paths and labels of an ImageFolder split."""
    classes = sorted(d.name for d in os.scandir(split_dir) if d.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            entry.path for entry in os.scandir(split_dir / name)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        paths.extend(files)
        labels.extend([label] * len(files))
    return classes, paths, np.asarray(labels, dtype=np.int64)


def _decode(path: str, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if size and image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _decode_many(args: tuple[list[str], int | None]) -> np.ndarray:
    paths, size = args
    return np.stack([_decode(p, size) for p in paths])


def _listing_key(root: Path, paths: list[str], size: int | None) -> str:
    """A hash of what the cache depends on: the files (names, sizes, times) and the size."""
    digest = hashlib.sha256(f"{root.resolve()}|{size}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_folder(cache_dir: str | None) -> Path:
    """Where decoded arrays are cached: data.cache_dir, $GSAM_REPRO_CACHE, ~/.cache/gsam_repro."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("GSAM_REPRO_CACHE"):
        return Path(os.environ["GSAM_REPRO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gsam_repro"


def decode_cached(root: Path, split: str, paths: list[str], labels: np.ndarray,
                  size: int | None, cache_dir: str | None, workers: int = 0) -> Arrays:
    """Decode a split once into uint8 arrays and keep them in an .npz cache for later runs."""
    key = _listing_key(root, paths, size)
    cache = cache_folder(cache_dir) / f"{root.resolve().name}-{split}-{key}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return Arrays(stored["images"], stored["labels"])
    if size is None:  # every image must have one size to stack; take the first's
        first = _decode(paths[0], None)
        if first.shape[0] != first.shape[1]:
            size = max(first.shape[:2])
    chunks = [paths[i:i + 2000] for i in range(0, len(paths), 2000)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_decode_many, [(c, size) for c in chunks]))
    else:
        parts = [_decode_many((c, size)) for c in chunks]
    try:
        images = np.concatenate(parts)
    except ValueError:
        raise UsageError(f"data.image_size: images under {root / split} differ in size; set "
                         "data.image_size to resize them") from None
    arrays = Arrays(images, labels)
    try:
        with atomic_path(cache, suffix=".npz") as temporary:  # np.savez wants the suffix
            np.savez(temporary, images=images, labels=labels)
    except OSError:
        pass  # a read-only cache only costs the decoding time next run
    return arrays


def imagefolder_eval_split(root: Path) -> str | None:
    """The evaluation split of an ImageFolder tree: test/ if present, else val/."""
    for split in ("test", "val"):
        if (root / split).is_dir():
            return split
    return None


def load_imagefolder(root: str, image_size: int | None, loader: str, cache_dir: str | None,
                     workers: int = 0) -> Source:
    """An ImageFolder tree root/{train, test or val}/<class>/<image>.

    Small images (side up to SMALL_IMAGE_SIDE, or any size with loader: gpu) are decoded once
    into cached uint8 arrays; bigger ones stay file lists for a streaming DataLoader."""
    root_path = Path(root).expanduser()
    eval_split = imagefolder_eval_split(root_path)
    if not (root_path / "train").is_dir() or eval_split is None:
        raise UsageError(
            f"data.root: {root_path} is not an ImageFolder tree (looked for "
            f"{root_path / 'train'}/<class>/ and {root_path / 'val'}/ or {root_path / 'test'}/)"
        )
    classes, train_paths, train_labels = _list_folder(root_path / "train")
    test_classes, test_paths, test_labels = _list_folder(root_path / eval_split)
    if not train_paths:
        raise UsageError(f"data.root: no images under {root_path / 'train'}/<class>/ "
                         f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    if not test_paths:
        raise UsageError(f"data.root: no images under {root_path / eval_split}/<class>/")
    if test_classes != classes:
        missing = sorted(set(test_classes) ^ set(classes))
        raise UsageError(f"data.root: train/ and {eval_split}/ have different class folders "
                         f"({', '.join(missing[:5])})")
    with _open_image(train_paths[0]) as first:
        side = max(first.size)
    channels = 3  # decoding converts to RGB, so every model sees three channels
    small = side <= SMALL_IMAGE_SIDE if image_size is None else image_size <= SMALL_IMAGE_SIDE
    if loader == "gpu" or (loader == "auto" and small):
        train = decode_cached(root_path, "train", train_paths, train_labels, image_size,
                              cache_dir, workers)
        test = decode_cached(root_path, eval_split, test_paths, test_labels, image_size,
                             cache_dir, workers)
        return Source(train, test, classes, channels)
    return Source(FileList(train_paths, train_labels), FileList(test_paths, test_labels),
                  classes, channels)


def _open_image(path: str):
    from PIL import Image

    return Image.open(path)
