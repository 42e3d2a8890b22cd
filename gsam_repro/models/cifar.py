"""Networks for small images (CIFAR-sized, 32x32): ResNet-18 with a 3x3 stem, Wide ResNets,
and a small CNN that trains on two CPU cores in minutes."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (post-activation, as in the ResNet paper)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stride-1 stem, no max-pool, four stages of BasicBlocks."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10,
                 in_chans: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers = []
        in_planes = width
        for stage, count in enumerate(blocks):
            planes = width * 2**stage
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class WideBlock(nn.Module):
    """Pre-activation block of a Wide ResNet (BN-ReLU-conv twice, optional dropout between)."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.project = None
        if stride != 1 or in_planes != planes:
            self.project = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        shortcut = x if self.project is None else self.project(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-width (Zagoruyko & Komodakis 2016): (depth - 4) / 6 blocks in each of three
    stages of 16k, 32k and 64k channels."""

    def __init__(self, depth: int = 16, width: int = 8, num_classes: int = 10,
                 in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"Wide ResNet depth must be 6n + 4 (10, 16, 22, 28, ...), got {depth}")
        per_stage = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(in_chans, channels[0], 3, 1, 1, bias=False)
        blocks = []
        in_planes = channels[0]
        for stage in range(3):
            for i in range(per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(WideBlock(in_planes, channels[stage + 1], stride, dropout))
                in_planes = channels[stage + 1]
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool stages and a linear head: about 24 k parameters at width 16,
    quick enough for CPU sweeps and still a real BatchNorm network for SAM's BN handling."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for stage in range(3):
            out = width * 2**stage
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    return ResNetCifar((2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans, **kwargs)


def wrn(depth: int, width: int, num_classes: int = 10, in_chans: int = 3,
        **kwargs) -> nn.Module:
    """Any Wide ResNet; `model.name: wrn40_4` style names are parsed into this."""
    return WideResNet(depth, width, num_classes=num_classes, in_chans=in_chans, **kwargs)


def wrn16_8(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    return wrn(16, 8, num_classes, in_chans, **kwargs)


def wrn28_10(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    return wrn(28, 10, num_classes, in_chans, **kwargs)


def small_cnn(num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    return SmallCNN(num_classes=num_classes, in_chans=in_chans, **kwargs)


CIFAR_MODELS = {
    "resnet18_cifar": resnet18_cifar,
    "wrn16_8": wrn16_8,
    "wrn28_10": wrn28_10,
    "small_cnn": small_cnn,
}
