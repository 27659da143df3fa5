"""Datasets and loaders: synthetic (the offline default), CIFAR-10 python batches, ImageFolder.

Every dataset is a *source* of uint8 CHW images and labels plus a list of indices (the split)
and a transform (resize, augmentation, normalisation) written with plain torch ops. The
validation split is carved from the training data by a seeded permutation, so the same ``seed``
always gives the same split. Augmentation draws its randomness from ``(seed, epoch, index)``,
not from a global generator: any batch of any epoch can be reproduced, which makes resuming an
interrupted run exact.
"""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from mbnas.errors import ConfigError
from mbnas.validation import check_choice, check_float, check_int

DATASETS = ("synthetic", "cifar10", "imagefolder")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
# Per-dataset channel statistics used for normalisation.
NORMALISATION = {
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
CROP_PADDING = 4  # at 32 pixels; scaled with the resolution


@dataclass
class DataConfig:
    """Which images to read and how to batch them (the ``data=`` config group's schema)."""

    name: str = "synthetic"
    root: str | None = None
    resolution: int = 32
    num_classes: int = 10  # synthetic only; CIFAR-10 has 10, ImageFolder counts its folders
    split: str = "train"
    val_fraction: float = 0.1
    batch_size: int = 64
    workers: int = 0
    augment: bool = True
    synthetic_size: int = 2048
    seed: int = 0


# ---------------------------------------------------------------- sources


class ArraySource:
    """Images held in memory as one uint8 tensor (N, C, H, W) with integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class FileSource:
    """Image files read on demand with Pillow, converted to RGB."""

    def __init__(self, paths: list[Path], labels: list[int]) -> None:
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError) as error:
            raise ConfigError(str(path), f"cannot read image ({error})",
                              "remove or replace the file") from None
        return torch.from_numpy(array.copy()).permute(2, 0, 1), self.labels[index]


# ---------------------------------------------------------------- transform and dataset


class ImageTransform:
    """uint8 CHW → resized, optionally augmented (padded random crop, flip), normalised float."""

    def __init__(self, resolution: int, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: bool) -> None:
        self.resolution = resolution
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment = augment
        self.padding = max(1, round(CROP_PADDING * resolution / 32))

    def __call__(self, image: torch.Tensor, rng: random.Random) -> torch.Tensor:
        x = resize_shorter_and_crop(image.float() / 255.0, self.resolution)
        if self.augment:
            size, pad = self.resolution, self.padding
            x = F.pad(x, (pad, pad, pad, pad))
            top, left = rng.randint(0, 2 * pad), rng.randint(0, 2 * pad)
            x = x[:, top:top + size, left:left + size]
            if rng.random() < 0.5:
                x = x.flip(-1)
        return (x - self.mean) / self.std


def resize_shorter_and_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (antialiased bilinear), then centre-crop square."""
    height, width = image.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        image = F.interpolate(image[None], size=new, mode="bilinear", antialias=True,
                              align_corners=False)[0]
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        image = image[:, top:top + size, left:left + size]
    return image


class ImageDataset(Dataset):
    """One split of a source: ``(image tensor, label)`` pairs, augmentation seeded per sample."""

    def __init__(self, source: ArraySource | FileSource, indices: torch.Tensor,
                 transform: ImageTransform, num_classes: int, seed: int) -> None:
        self.source, self.indices, self.transform = source, indices, transform
        self.num_classes, self.seed, self.epoch = num_classes, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draw: the same (seed, epoch, index) always gives one image."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[position])
        image, label = self.source.get(index)
        rng = random.Random(hash((self.seed, self.epoch, index)))
        return self.transform(image, rng), label


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch that can start part-way through (for exact resume).

    With ``shard=(rank, size)`` it serves rank ``rank``'s part of every epoch's order: samples
    ``rank, rank + size, ...`` (as torch's DistributedSampler), so at batch ``b`` per rank the
    ``size`` ranks' k-th batches together are the k-th batch of ``b * size`` that one process
    gets, and a position (epoch, batch) means the same images for any number of processes.
    ``even`` first drops the epoch's last ``len % size`` samples so every rank gets as many
    batches (training); without it every sample is served once (evaluation).
    """

    def __init__(self, size: int, seed: int, shuffle: bool, shard: tuple[int, int] = (0, 1),
                 even: bool = True) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.ranks = shard
        self.even = even
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Serve epoch ``epoch``'s order, skipping its first ``start`` samples."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's samples of the current epoch, from its first."""
        if not self.shuffle:
            order = list(range(self.size))
        else:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        if self.ranks == 1:
            return order
        if self.even:
            order = order[:len(order) - len(order) % self.ranks]
        return order[self.rank::self.ranks]

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        served = self.size if self.ranks == 1 else len(self.order())
        return served - self.start


# ---------------------------------------------------------------- synthetic data


def synthetic_images(count: int, num_classes: int, resolution: int, seed: int, draw: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable images: per class an oriented grating, a colour and a blob, jittered and noisy.

    Each class owns an orientation, a spatial frequency and a colour; every image draws a random
    phase, jitter of those parameters, a random contrast, a faint distractor grating of another
    class and pixel noise. Convolutions pick up orientation and frequency easily but not
    perfectly, so accuracy climbs with capacity and training instead of saturating at once.
    """
    classes = torch.Generator().manual_seed(seed)
    orient = torch.rand(num_classes, generator=classes) * math.pi
    freq = 1.5 + 3.0 * torch.rand(num_classes, generator=classes)
    colour = torch.rand(num_classes, 3, generator=classes) * 2 - 1
    gen = torch.Generator().manual_seed(seed * 7919 + draw + 1)  # the images of one draw
    labels = torch.randperm(count, generator=gen) % num_classes
    shift = torch.randint(num_classes - 1, (count,), generator=gen)
    other = (labels + 1 + shift) % num_classes  # a distractor class, never the label

    def noisy(values: torch.Tensor, spread: float) -> torch.Tensor:
        return values * (1 + spread * torch.randn(values.shape, generator=gen))

    axis = torch.linspace(-1, 1, resolution)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")

    def grating(cls: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
        theta = orient[cls] + 0.15 * torch.randn(count, generator=gen)
        f = noisy(freq[cls], 0.12) * math.pi
        phase = torch.rand(count, generator=gen) * 2 * math.pi
        proj = xx * torch.cos(theta)[:, None, None] + yy * torch.sin(theta)[:, None, None]
        return amplitude[:, None, None] * torch.sin(f[:, None, None] * proj + phase[:, None, None])

    contrast = 0.4 + 0.6 * torch.rand(count, generator=gen)
    pattern = grating(labels, contrast) + grating(other, 0.5 * contrast)
    centre = torch.rand(count, 2, generator=gen) * 1.2 - 0.6
    blob = torch.exp(-((xx - centre[:, 0, None, None]) ** 2 + (yy - centre[:, 1, None, None]) ** 2)
                     / 0.08)
    tint = colour[labels] + 0.5 * torch.randn(count, 3, generator=gen)
    image = (pattern[:, None] * (0.6 + 0.4 * tint[:, :, None, None].abs())
             + blob[:, None] * tint[:, :, None, None]
             + 0.3 * torch.randn(count, 3, 1, 1, generator=gen)
             + 0.6 * torch.randn(count, 3, resolution, resolution, generator=gen))
    pixels = (128 + 64 * image).round().clamp(0, 255).to(torch.uint8)
    return pixels, labels


def _synthetic_source(cfg: DataConfig, split: str) -> ArraySource:
    size = check_int(cfg.synthetic_size, "data.synthetic_size", minimum=2)
    classes = check_int(cfg.num_classes, "data.num_classes", minimum=2)
    if split == "test":  # a separate draw of images of the same classes
        return ArraySource(*synthetic_images(max(2, size // 5), classes, cfg.resolution,
                                             cfg.seed, draw=1))
    return ArraySource(*synthetic_images(size, classes, cfg.resolution, cfg.seed))


# ---------------------------------------------------------------- CIFAR-10 python batches


def _cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled CIFAR batch file as uint8 (N, 3, 32, 32) images and int64 labels."""
    try:
        with path.open("rb") as file:
            batch = pickle.load(file, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError,
            AttributeError) as error:
        raise ConfigError(str(path), f"not a CIFAR-10 python batch ({type(error).__name__})",
                          "expected a pickled dict with 'data' (N×3072 uint8) and 'labels', as "
                          "in cifar-10-python.tar.gz") from None
    if len(data) != len(labels) or (len(labels) and not 0 <= labels.min() <= labels.max() < 10):
        raise ConfigError(str(path), "labels do not match the images or lie outside 0..9",
                          "use an unmodified CIFAR-10 python batch")
    return torch.from_numpy(data), torch.from_numpy(labels)


@lru_cache(maxsize=4)
def _cifar_source(root: str, test: bool) -> ArraySource:
    folder = Path(root)
    if test:
        files = [folder / "test_batch"] if (folder / "test_batch").is_file() else []
        expected = "a `test_batch` file (CIFAR-10's test set)"
    else:
        files = sorted(folder.glob("data_batch_*"), key=lambda p: (len(p.name), p.name))
        expected = "training files `data_batch_1` … `data_batch_5`"
    if not files:
        raise ConfigError(f"data.root={root}", f"no {expected} in this folder",
                          "point data.root at the extracted cifar-10-batches-py folder")
    parts = [_cifar_batch(path) for path in files]
    return ArraySource(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))


# ---------------------------------------------------------------- ImageFolder directories


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_split_folders(root: Path) -> bool:
    """Whether ``root`` holds ``train/`` (+ ``test/`` or ``val/``) rather than class folders."""
    return (root / "train").is_dir() and any((root / name).is_dir() for name in ("test", "val"))


@lru_cache(maxsize=4)
def _imagefolder_source(root: str, split: str) -> FileSource:
    folder = Path(root)
    if _has_split_folders(folder):
        folder = folder / "train" if split != "test" else next(
            folder / name for name in ("test", "val") if (folder / name).is_dir())
    elif split == "test":
        raise ConfigError(f"data.root={root}", "no test images: the folder holds only class "
                          "folders", "add train/ and test/ subfolders of class folders, or use "
                          "data.split=val")
    classes = _class_folders(folder)
    paths, labels = [], []
    for label, class_folder in enumerate(classes):
        for path in sorted(class_folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                paths.append(path)
                labels.append(label)
    if len(classes) < 2 or not paths:
        raise ConfigError(f"data.root={root}", f"found {len(classes)} class folder(s) and "
                          f"{len(paths)} image(s) in {folder}", "expected one subfolder of "
                          f"images per class (at least two), e.g. {folder}/cat/1.png")
    return FileSource(paths, labels)


def _imagefolder_classes(root: str) -> int:
    folder = Path(root)
    return len(_class_folders(folder / "train" if _has_split_folders(folder) else folder))


# ---------------------------------------------------------------- public API


def check_data_config(cfg: DataConfig, split: str) -> Path | None:
    """Validate ``cfg`` for ``split``; the dataset folder when the dataset reads one."""
    check_choice(cfg.name, "data.name", DATASETS)
    check_choice(split, "data.split", SPLITS)
    check_int(cfg.resolution, "data.resolution", minimum=8)
    check_int(cfg.batch_size, "data.batch_size")
    check_int(cfg.workers, "data.workers", minimum=0)
    check_float(cfg.val_fraction, "data.val_fraction", 0.0, 0.9)
    if split == "val" and cfg.val_fraction <= 0:
        raise ConfigError("data.val_fraction", "is 0, so there is no validation split",
                          "set data.val_fraction=0.1, or use data.split=train or test")
    if cfg.name == "synthetic":
        return None
    if not cfg.root:
        raise ConfigError("data.root", f"not set for data={cfg.name}",
                          f"give the dataset folder, e.g. data.root=/path/to/{cfg.name}")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"data.root={cfg.root}", "no such folder",
                          "check the path; it should be the dataset folder itself")
    return root


def dataset_num_classes(cfg: DataConfig) -> int:
    """How many classes the configured dataset has."""
    root = check_data_config(cfg, "train")
    if cfg.name == "synthetic":
        return check_int(cfg.num_classes, "data.num_classes", minimum=2)
    if cfg.name == "cifar10":
        return 10
    return _imagefolder_classes(str(root))


def _source(cfg: DataConfig, split: str) -> ArraySource | FileSource:
    root = check_data_config(cfg, split)
    if cfg.name == "synthetic":
        return _synthetic_source(cfg, split)
    if cfg.name == "cifar10":
        return _cifar_source(str(root), split == "test")
    return _imagefolder_source(str(root), split)


def split_indices(size: int, split: str, val_fraction: float, seed: int) -> torch.Tensor:
    """The indices of ``split`` in a training pool of ``size``: a seeded, disjoint carve-out."""
    if split == "test":
        return torch.arange(size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    val = min(size - 1, max(1, round(size * val_fraction))) if val_fraction > 0 else 0
    chosen = order[:val] if split == "val" else order[val:]
    return chosen.sort().values


def make_dataset(cfg: DataConfig, split: str | None = None) -> ImageDataset:
    """Split ``split`` (default ``cfg.split``) of the configured dataset, transforms attached."""
    split = split or cfg.split
    source = _source(cfg, split)
    indices = split_indices(len(source), split, cfg.val_fraction, cfg.seed)
    mean, std = NORMALISATION[cfg.name]
    transform = ImageTransform(cfg.resolution, mean, std, augment=cfg.augment and split == "train")
    return ImageDataset(source, indices, transform, dataset_num_classes(cfg), cfg.seed)


def make_loader(cfg: DataConfig, split: str | None = None, *, shuffle: bool | None = None,
                batch_size: int | None = None, drop_last: bool = False,
                shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """A DataLoader over ``make_dataset(cfg, split)``; shuffled by default for ``train``.

    Its sampler is an :class:`EpochSampler` and its dataset an :class:`ImageDataset`: call
    :func:`set_epoch` before each pass to get that epoch's order and augmentation. ``shard``
    ``(rank, ranks)`` serves one data-parallel rank's part (every sample once when shuffle is
    off; an equal share of each epoch when it is on).
    """
    dataset = make_dataset(cfg, split)
    split = split or cfg.split
    shuffle = split == "train" if shuffle is None else shuffle
    sampler = EpochSampler(len(dataset), cfg.seed, shuffle, shard, even=shuffle)
    # Its own generator keeps the loader from drawing on the global RNG (exact resume).
    generator = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(dataset, batch_size=batch_size or cfg.batch_size, sampler=sampler,
                      num_workers=cfg.workers, drop_last=drop_last, generator=generator,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)


def set_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Make ``loader`` serve epoch ``epoch`` from batch ``start_batch`` on (same order, crops)."""
    sampler, dataset = getattr(loader, "sampler", None), getattr(loader, "dataset", None)
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(epoch, start_batch * (loader.batch_size or 1))
    if isinstance(dataset, ImageDataset):
        dataset.set_epoch(epoch)

