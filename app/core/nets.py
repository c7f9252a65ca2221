"""Our own architectures: the lecture's LeNet and the stronger CIFAR-10 network.

Modules are named attributes (not anonymous ``nn.Sequential`` indices) so that every layer has a
readable ``named_modules()`` path: ``conv1``, ``pool1``, ``fc3`` ... These names are the public
layer identifiers of the API.
"""

from __future__ import annotations

import torch
from torch import nn


class LectureNet(nn.Module):
    """The lecture network (LeNet-5 style), exactly as in LECTURE.md section 8.

    32x32x3 input; conv1 8@5x5 -> 28x28x8; pool1 2x2/2 -> 14x14x8; conv2 16@5x5 -> 10x10x16;
    pool2 -> 5x5x16 = 400; fc3 400->120; fc4 120->84; out 84->10. Parameters:
    608 + 3,216 + 48,120 + 10,164 + 850 = 62,958.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc3 = nn.Linear(400, 120)
        self.relu3 = nn.ReLU()
        self.fc4 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.out = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc3(x))
        x = self.relu4(self.fc4(x))
        return self.out(x)


class ConvBlock(nn.Module):
    """conv3x3 -> max-pool 2x2 -> BN -> ReLU -> conv3x3 -> BN -> ReLU (pooling early saves compute)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.pool(self.conv1(x))))
        return self.relu2(self.bn2(self.conv2(x)))


class CifarNet(nn.Module):
    """A compact VGG-style CIFAR-10 network with a 5x5 stem (its filters are worth looking at).

    stem conv 5x5 (3->32, no padding) 32x32 -> 28x28, then three blocks (64, 256, 256 channels)
    that each halve the resolution (28 -> 14 -> 7 -> 3), global max-pool and a linear classifier.
    About 2.0 M parameters and ~116 M multiply-adds per image (a 128-channel middle block, 1.2 M
    parameters, levelled off near 89 % test accuracy). The blocks pool right after their first
    convolution (cheap), but the first block still sees the full-resolution stem output: pooling
    straight after the stem (an earlier design) capped accuracy near 88 %.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int] = (32, 64, 256, 256)) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Conv2d(3, w0, kernel_size=5, bias=False)
        self.stem_bn = nn.BatchNorm2d(w0)
        self.stem_relu = nn.ReLU()
        self.block1 = ConvBlock(w0, w1)
        self.block2 = ConvBlock(w1, w2)
        self.block3 = ConvBlock(w2, w3)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.flatten(self.pool(x)))


ARCHITECTURES: dict[str, type[nn.Module]] = {"lenet": LectureNet, "cifarnet": CifarNet}


def build(arch: str, num_classes: int = 10) -> nn.Module:
    """Build one of our architectures by name (``lenet`` or ``cifarnet``)."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return cls(num_classes=num_classes)
