"""Loaders that yield (images, labels) batches on the training device.

`ArrayLoader` keeps a decoded data set as one uint8 tensor on the training device and does
shuffling, crop, flip and cutout there: no worker processes, no host-to-device copies (the
airbench recipe). On a CPU run the same code works on CPU tensors and is the fastest loader for
small images too. `BatchWorkerLoader` runs the same batch function in DataLoader workers,
and `FileLoader` streams big images from disk through torchvision transforms.

Shuffling and augmentation draw from generators seeded by (run seed, epoch), so the data a run
sees in an epoch does not depend on whether the run was interrupted and resumed before it.

A data-parallel run gives each training loader a `shard` (rank, world size): batch_size stays
the global batch, and each process gets its own contiguous part of every global batch. The
array loaders augment the whole global batch before taking the part, so the processes together
see exactly the images, augmented exactly as, a single process with the same batch size would.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterator

import numpy as np
import torch

from gsam_repro.data import augment as aug
from gsam_repro.data.sources import Arrays, FileList

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_PADDING = 4


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (run seed, epoch, batch ...), stable everywhere."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def channel_stats(images: np.ndarray, limit: int = 5000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0-1 scale) of up to `limit` evenly spaced (N, H, W, C) uint8
    images (5,000 CIFAR images pin both to about 1e-3), summed in float64 without a float copy
    of the data."""
    sample = images[::max(1, len(images) // limit)]
    pixels = sample.reshape(-1, sample.shape[-1])
    count = len(pixels)
    total = np.einsum("ij->j", pixels, dtype=np.float64, casting="unsafe")
    squares = np.einsum("ij,ij->j", pixels, pixels, dtype=np.float64, casting="unsafe")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return (mean / 255.0).tolist(), np.maximum(std / 255.0, 1e-3).tolist()


def shard_range(batch_size: int, shard: tuple[int, int] | None) -> slice | None:
    """The positions of process `rank`'s part within a global batch (None: no shard)."""
    if shard is None:
        return None
    rank, world = shard
    part = batch_size // world
    return slice(rank * part, (rank + 1) * part)


class _Batches:
    """What ArrayLoader and FileLoader share: batch counting, epochs, and cheap variants.
    Subclasses set train, batch_size, max_batches and epoch, and define num_examples."""

    train: bool
    batch_size: int
    max_batches: int | None
    epoch: int
    num_examples: int  # a property of each subclass

    def variant(self, **changes):
        """Another loader over the same data (no copy) with some settings changed, e.g. an
        un-augmented pass over the training set: variant(train=False, shuffle=False,
        augment="none")."""
        other = copy.copy(self)
        for key, value in changes.items():
            if not hasattr(other, key):
                raise AttributeError(f"{type(self).__name__} has no setting {key!r}")
            setattr(other, key, value)
        return other

    def __len__(self) -> int:
        if self.train:  # the last partial training batch is dropped
            batches = self.num_examples // self.batch_size
        else:
            batches = -(-self.num_examples // self.batch_size)
        return min(batches, self.max_batches) if self.max_batches else batches

    @property
    def images_per_epoch(self) -> int:
        return min(len(self) * self.batch_size, self.num_examples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class ArrayLoader(_Batches):
    """Batches of a uint8 array data set held on `device`, augmented on `device`.

    train=True shuffles, drops the last partial batch and augments; train=False keeps the
    order and every image, and only resizes (when image_size differs) and normalises."""

    def __init__(self, arrays: Arrays, *, batch_size: int, device: torch.device, train: bool,
                 augment: str = "none", cutout: int = 0, image_size: int | None = None,
                 mean: list[float], std: list[float], seed: int = 0,
                 channels_last: bool = False, shuffle: bool | None = None,
                 max_batches: int | None = None, shard: tuple[int, int] | None = None):
        self.device = torch.device(device)
        images = torch.from_numpy(np.ascontiguousarray(arrays.images)).permute(0, 3, 1, 2)
        self.images = images.contiguous().to(self.device)
        self.labels = torch.from_numpy(np.asarray(arrays.labels)).to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.augment = augment if train else "none"
        self.cutout = cutout if train else 0
        self.image_size = image_size or self.images.shape[-1]
        self.seed = seed
        self.epoch = 0
        self.channels_last = channels_last
        self.max_batches = max_batches
        self.shard = shard  # (rank, world size): this process's part of every batch
        std_tensor = torch.tensor(std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_tensor)).view(1, -1, 1, 1).to(self.device)
        self.shift = (-torch.tensor(mean) / std_tensor).view(1, -1, 1, 1).to(self.device)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def order(self) -> torch.Tensor | None:
        """This epoch's permutation of the examples (None: natural order)."""
        if not self.shuffle:
            return None
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derived_seed(self.seed, self.epoch, 1))
        return torch.randperm(self.num_examples, device=self.device, generator=generator)

    def batch(self, index: int, order: torch.Tensor | None,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number `index` of the epoch: select, augment, normalise (and, with a shard,
        keep this process's part; before augmenting when nothing random happens)."""
        start, stop = index * self.batch_size, (index + 1) * self.batch_size
        part = shard_range(self.batch_size, self.shard)
        if part is not None and generator is None:
            start, stop, part = start + part.start, start + part.stop, None
        if order is None:
            images, labels = self.images[start:stop], self.labels[start:stop]
        else:
            chosen = order[start:stop]
            images, labels = self.images[chosen], self.labels[chosen]
        if self.augment == "cifar":
            images = aug.random_flip(aug.pad_crop(images, CIFAR_PADDING, generator), generator)
        x = images.float()
        if self.augment == "inception":
            x = aug.inception_crop(x, self.image_size, generator)
        else:
            x = aug.resize(x, self.image_size)
        x = torch.addcmul(self.shift, x, self.scale)
        if self.cutout:
            x = aug.cutout(x, self.cutout, generator)
        if part is not None:
            x, labels = x[part], labels[part]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        generator = None
        if self.augment != "none" or self.cutout:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(derived_seed(self.seed, self.epoch, 2))
        for index in range(len(self)):
            yield self.batch(index, order, generator)


class _WorkerBatches(torch.utils.data.Dataset):
    """Batch i of an epoch, computed by an ArrayLoader on CPU inside a DataLoader worker."""

    def __init__(self, loader: ArrayLoader):
        self.loader = loader
        self.order: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator()
        generator.manual_seed(derived_seed(self.loader.seed, self.loader.epoch, 3, index))
        return self.loader.batch(index, self.order, generator)


class BatchWorkerLoader:
    """ArrayLoader's batches built in DataLoader worker processes on CPU, then moved to the
    device (pinned, non-blocking). For small images when the device should not hold the data."""

    def __init__(self, arrays: Arrays, *, device: torch.device, num_workers: int, **kwargs):
        self.device = torch.device(device)
        self.cpu_loader = ArrayLoader(arrays, device=torch.device("cpu"), **kwargs)
        self.num_workers = num_workers

    def variant(self, **changes) -> BatchWorkerLoader:
        """The same loader with ArrayLoader settings changed (see ArrayLoader.variant)."""
        other = copy.copy(self)
        other.cpu_loader = self.cpu_loader.variant(**changes)
        return other

    @property
    def batch_size(self) -> int:
        return self.cpu_loader.batch_size

    @property
    def num_examples(self) -> int:
        return self.cpu_loader.num_examples

    @property
    def images_per_epoch(self) -> int:
        return self.cpu_loader.images_per_epoch

    def __len__(self) -> int:
        return len(self.cpu_loader)

    def set_epoch(self, epoch: int) -> None:
        self.cpu_loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = _WorkerBatches(self.cpu_loader)
        batches.order = self.cpu_loader.order()
        pin = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                             num_workers=self.num_workers, pin_memory=pin)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, files: FileList, transform):
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.files.paths[index]) as image:
            return self.transform(image.convert("RGB")), int(self.files.labels[index])


def file_transform(train: bool, augment: str, image_size: int, cutout: int):
    """torchvision transforms for streamed images (ImageNet-style evaluation: resize to
    image_size / 0.875, centre crop)."""
    from torchvision import transforms as T

    normalise = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and augment == "inception":
        steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    elif train and augment == "cifar":
        steps = [T.Resize(image_size), T.CenterCrop(image_size),
                 T.RandomCrop(image_size, padding=CIFAR_PADDING), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(int(round(image_size / 0.875))), T.CenterCrop(image_size)]
    after = []
    if train and cutout:  # a cutout x cutout square (kept inside the image), zero after normalising
        area = min(1.0, (cutout / image_size) ** 2)
        after = [T.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0)]
    return T.Compose(steps + normalise + after)


class FileLoader(_Batches):
    """Streams an ImageFolder split from disk through a torch DataLoader (for big images)."""

    def __init__(self, files: FileList, *, batch_size: int, device: torch.device, train: bool,
                 image_size: int, seed: int, num_workers: int, augment: str = "none",
                 cutout: int = 0,
                 channels_last: bool = False, shuffle: bool | None = None,
                 max_batches: int | None = None, shard: tuple[int, int] | None = None):
        self.files = files
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.seed = seed
        self.epoch = 0
        self.num_workers = num_workers
        self.channels_last = channels_last
        self.max_batches = max_batches
        self.shard = shard
        self.dataset = _ImageFiles(files, file_transform(train, augment, image_size, cutout))

    @property
    def num_examples(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator()
        generator.manual_seed(derived_seed(self.seed, self.epoch, 4))
        if self.shard is None:
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                drop_last=self.train, num_workers=self.num_workers, generator=generator,
                pin_memory=self.device.type == "cuda",
            )
        else:
            loader = self._shard_loader(generator)
        for index, (x, y) in enumerate(loader):
            if index >= len(self):
                break
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)

    def _shard_loader(self, generator: torch.Generator) -> torch.utils.data.DataLoader:
        """This process's part of every global batch: the permutation is the same on every
        process; augmentation draws differ per process (a seed of their own)."""
        if self.shuffle:
            order = torch.randperm(self.num_examples, generator=generator)
        else:
            order = torch.arange(self.num_examples)
        part = shard_range(self.batch_size, self.shard)
        batches = [order[start + part.start:start + part.stop].tolist()
                   for start in range(0, len(self) * self.batch_size, self.batch_size)]
        rank_generator = torch.Generator()
        rank_generator.manual_seed(derived_seed(self.seed, self.epoch, 4, self.shard[0]))
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.num_workers,
            generator=rank_generator, pin_memory=self.device.type == "cuda",
        )


def shard_bundle(bundle, rank: int, world: int):
    """The DataBundle of process `rank` in a data-parallel run of `world` processes.

    Training batches: this process's part of every global batch. The Hessian batches stay
    unsharded but come in per-process sizes (rank 0 measures alone, on one device's memory):
    the first N * world of them are the images of the first N global batches. Test and
    validation loaders are unchanged (rank 0 evaluates)."""
    if world == 1:
        return bundle
    per_device = bundle.train.batch_size // world
    return dataclasses.replace(bundle, train=bundle.train.variant(shard=(rank, world)),
                               hessian=bundle.hessian.variant(batch_size=per_device))
