"""Batched augmentation on image tensors, on whatever device they live (GPU or CPU).

All functions take a whole batch and a torch.Generator on the batch's device, so a GPU-resident
data set is augmented on the GPU without any per-image Python work, and a run is reproducible
from (seed, epoch) alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the original size from the image zero-padded by `padding` on each side
    (the CIFAR recipe). Works on (B, C, H, W) of any dtype.

    The padded batch is viewed (no copy) as every possible window, and one window is picked per
    image, so the work is a single copy of the batch."""
    if padding <= 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), device=images.device,
                            generator=generator)
    windows = padded.unfold(2, height, 1).unfold(3, width, 1)  # (B, C, 2p+1, 2p+1, H, W)
    return windows[torch.arange(batch, device=images.device), :, offsets[0], offsets[1]]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one size x size square per image (DeVries & Taylor 2017); the centre is uniform
    over the image, so squares may be cut by the border. Apply after normalisation."""
    if size <= 0:
        return images
    batch, _, height, width = images.shape
    centre_y = torch.randint(0, height, (batch,), device=images.device, generator=generator)
    centre_x = torch.randint(0, width, (batch,), device=images.device, generator=generator)
    top = (centre_y - size // 2)[:, None]
    left = (centre_x - size // 2)[:, None]
    ys = torch.arange(height, device=images.device)[None, :]
    xs = torch.arange(width, device=images.device)[None, :]
    inside_y = (ys >= top) & (ys < top + size)  # (B, H)
    inside_x = (xs >= left) & (xs < left + size)  # (B, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return images * keep[:, None].to(images.dtype)


def inception_crop(images: torch.Tensor, out_size: int, generator: torch.Generator,
                   scale: tuple[float, float] = (0.08, 1.0),
                   ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random-resized crop + flip (the Inception / ImageNet recipe) of a float batch.

    Each image gets a crop covering `scale` of its area with aspect ratio in `ratio`, resized
    bilinearly to out_size; half of them mirrored. Crops that would exceed the image are
    clipped to it (torchvision resamples instead; the difference is rare and small)."""
    batch = images.shape[0]
    device = images.device
    area = torch.empty(batch, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(batch, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # as fractions of the image side
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * (1 - height)
    flip = torch.rand(batch, device=device, generator=generator) < 0.5
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [batch, images.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)


def resize(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """Bilinear resize of a float batch to out_size x out_size (antialiased when shrinking)."""
    if images.shape[-1] == out_size and images.shape[-2] == out_size:
        return images
    return F.interpolate(images, size=(out_size, out_size), mode="bilinear",
                         align_corners=False, antialias=out_size < images.shape[-1])
