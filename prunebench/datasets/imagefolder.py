"""``imagenet`` and ``imagefolder:<path>``: torchvision ImageFolder ``train/`` and ``val/`` folders.

Images are decoded and augmented in DataLoader workers (RandomResizedCrop + flip for training, resize
+ center crop for evaluation) and normalised on the device by the loop.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prunebench.datasets.base import FolderData, register_dataset
from prunebench.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class IndexedDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that items are ``(index, x, y)``: indices flow explicitly to the pruner."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return i, x, y


class UnreadableImage(DataError):
    """An image file that cannot be decoded, or has no pixels. Raised in a DataLoader worker, torch
    re-raises it in the main process with the worker's traceback as the message: keep our line only."""

    def __init__(self, msg: str) -> None:
        if msg.startswith("Caught "):
            tail = [line for line in msg.splitlines() if line.strip()][-1]
            msg = tail.split("UnreadableImage: ", 1)[-1]
        super().__init__(msg)


def load_image(path: str):
    """Decode ``path`` as RGB; a corrupt, truncated or 0x0-pixel image is one line naming the file
    (torchvision's default loader crashes on it, or trains on an empty tensor, whenever it is sampled)."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
            if img.width < 1 or img.height < 1:
                raise ValueError(f"it has {img.width}x{img.height} pixels")
            return img.convert("RGB")
    except Exception as e:
        why = str(e).splitlines()[0][:120] if str(e) else ""
        raise UnreadableImage(f"image {path} is unreadable ({type(e).__name__}: {why}); remove or replace it") from None


def _folder(root: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def load_folder(name: str, root: Path, image_size: int | None, *, default_epochs: int) -> FolderData:
    from torchvision import datasets, transforms

    size = int(image_size or 224)
    train_dir = _folder(root, ("train",))
    val_dir = _folder(root, ("val", "validation", "test"))
    if train_dir is None or val_dir is None:
        raise DataError(
            f"{name}: expected {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg (ImageFolder layout); "
            f"found {'no train/' if train_dir is None else 'no val/'} there"
        )
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
    )
    test_tf = transforms.Compose(
        [transforms.Resize(int(round(size * 256 / 224))), transforms.CenterCrop(size), transforms.ToTensor()]
    )
    try:
        tr = datasets.ImageFolder(str(train_dir), transform=train_tf, loader=load_image)
        te = datasets.ImageFolder(str(val_dir), transform=test_tf, loader=load_image)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{name}: cannot read ImageFolder in {root}: {str(e).splitlines()[0]}") from None
    if tr.classes != te.classes:
        raise DataError(
            f"{name}: train/ and val/ have different class folders ({len(tr.classes)} vs {len(te.classes)})"
        )
    labels = torch.tensor([y for _, y in tr.samples], dtype=torch.int64)
    return FolderData(
        name=name,
        train=IndexedDataset(tr),
        test=IndexedDataset(te),
        labels=labels,
        num_classes=len(tr.classes),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=size,
        key=f"{name}-{root}-{len(tr)}",
        classes=tuple(tr.classes),
        default_epochs=default_epochs,
        source=str(root),
    )


@register_dataset("imagenet", "ImageNet-1K as ImageFolder in <data-dir>/imagenet/{train,val} (torchvision layout)")
def load_imagenet(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> FolderData:
    return load_folder("imagenet", root / "imagenet", image_size, default_epochs=90)


@register_dataset("imagefolder", "any ImageFolder: imagefolder:<path> with <path>/{train,val}/<class>/*", arg="path")
def load_imagefolder(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> FolderData:
    if not arg:
        from prunebench.errors import ConfigError

        raise ConfigError("dataset imagefolder needs a path: imagefolder:<path> with <path>/train and <path>/val")
    path = Path(arg).expanduser()
    if not path.is_absolute() and not path.exists():
        path = root / path
    return load_folder(f"imagefolder:{arg}", path, image_size, default_epochs=90)
