"""Models: a registry of factories ``create_model(name, num_classes, input_shape)``.

``cnn-small``  an airbench-style conv net (conv-BN-GELU groups with max-pooling) that trains CIFAR-10
               well on a couple of CPU cores in minutes; works on any input size >= 8 px.
``resnet18`` / ``resnet50``  torchvision ResNets with the CIFAR stem (3x3 conv, stride 1, no max-pool)
               for small inputs.
``mlp``        a two-layer perceptron (fast tests).
``tv:<name>``  any torchvision classification model by name (ImageNet stem), e.g. ``tv:resnet50``,
               ``tv:vit_b_16``, ``tv:swin_t``; randomly initialised (no weights are downloaded).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch
from torch import nn

from prunebench.errors import ConfigError

_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register_model(name: str, description: str):
    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = (fn, description)
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_description(name: str) -> str:
    return _MODELS[name][1]


def create_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Build model ``name`` for ``num_classes`` and inputs of shape ``(C, H, W)``."""
    if name.startswith("tv:"):
        return _torchvision_model(name[3:], num_classes, input_shape)
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(list_models())}, tv:<torchvision model name>")
    return _MODELS[name][0](num_classes=num_classes, input_shape=input_shape)


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer (its input is the penultimate embedding)."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier head")
    return last


# ---------------------------------------------------------------------------------------------------


def _conv_bn(ci: int, co: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.GELU())


class ConvGroup(nn.Module):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU (airbench's block, pooling before the first BN)."""

    def __init__(self, ci: int, co: int, pool: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ci, co, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn1 = nn.BatchNorm2d(co)
        self.conv2 = nn.Conv2d(co, co, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(co)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class CNNSmall(nn.Module):
    """Stem conv, three conv groups (each halving the resolution while it is >= 2 px), global max-pool.

    For inputs of 16 px or more the stem is a 2x2 stride-2 "patchify" convolution: it cuts the cost of
    every later layer by 4 (the full-resolution layers dominate a CIFAR net's FLOPs), which is what
    lets this net train CIFAR-10 to ~85% in minutes on two CPU cores. Smaller inputs (8x8 digits) keep
    a 3x3 stride-1 stem.
    """

    def __init__(self, num_classes: int, in_channels: int, size: int, widths=(32, 64, 128, 256)) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        patchify = size >= 16
        groups, res = [], (size // 2 if patchify else size)
        for ci, co in ((w0, w1), (w1, w2), (w2, w3)):
            pool = res >= 2
            groups.append(ConvGroup(ci, co, pool))
            res = res // 2 if pool else res
        self.stem = (
            nn.Sequential(nn.Conv2d(in_channels, w0, 2, stride=2, bias=False), nn.BatchNorm2d(w0), nn.GELU())
            if patchify
            else _conv_bn(in_channels, w0)
        )
        self.body = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(w3, num_classes, bias=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@register_model(
    "cnn-small",
    "airbench-style conv net, 2x2 patchify stem, widths 32/64/128/256 (1.2M params); CIFAR-10 in minutes on CPU",
)
def cnn_small(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    c, h, _ = input_shape
    return CNNSmall(num_classes, c, h)


@register_model("mlp", "two-layer perceptron with 256 hidden units (tests, tiny data)")
def mlp(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    d = input_shape[0] * input_shape[1] * input_shape[2]
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, num_classes))
    return m


def _cifar_resnet(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    import torchvision

    m = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    m.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


@register_model("resnet18", "ResNet-18 with the CIFAR stem (3x3 conv, no max-pool), torchvision blocks")
def resnet18(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return _cifar_resnet("resnet18", num_classes, input_shape)


@register_model("resnet50", "ResNet-50 with the CIFAR stem (3x3 conv, no max-pool), torchvision blocks")
def resnet50(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return _cifar_resnet("resnet50", num_classes, input_shape)


def _torchvision_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    import torchvision

    valid = torchvision.models.list_models(module=torchvision.models)
    if name not in valid:
        raise ConfigError(
            f"unknown torchvision model {name!r}; valid: tv:<one of {', '.join(sorted(valid)[:12])}, ...>"
        )
    if input_shape[0] != 3:
        raise ConfigError(f"tv:{name} expects 3-channel images, the dataset has {input_shape[0]}")
    kwargs = {"weights": None, "num_classes": num_classes}
    if name.startswith(("vit_", "swin_", "maxvit")):
        kwargs["image_size"] = input_shape[1] if name.startswith("vit_") else None
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return torchvision.models.get_model(name, **kwargs)
