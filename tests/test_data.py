import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mbnas.data import DataConfig, dataset_num_classes, make_dataset, make_loader, set_epoch
from mbnas.errors import ConfigError

SHARED_CIFAR = Path(__file__).resolve().parents[1] / "../shared/data/cifar-10-batches-py"


def write_cifar(folder: Path, batches: int = 2, per_batch: int = 20, test: bool = True) -> Path:
    """A tiny CIFAR-10 python-format folder: pickled dicts of uint8 rows and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, batches + 1)] + (["test_batch"] if test else [])
    for name in names:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 "batch_label": name, "filenames": [f"{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    return folder


def write_imagefolder(root: Path, classes=("cat", "dog", "emu"), per_class: int = 4) -> Path:
    from PIL import Image

    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((20 + i, 28, 3), 60 * index + i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_synthetic_is_deterministic_and_split_is_disjoint():
    cfg = DataConfig(synthetic_size=200, resolution=16, num_classes=4, seed=3)
    train, val = make_dataset(cfg, "train"), make_dataset(cfg, "val")
    assert len(train) + len(val) == 200 and len(val) == 20
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    again = make_dataset(cfg, "val")
    assert torch.equal(val.indices, again.indices)
    assert torch.equal(val[0][0], again[0][0]) and val[0][1] == again[0][1]
    other = make_dataset(DataConfig(synthetic_size=200, resolution=16, num_classes=4, seed=4),
                         "val")
    assert not torch.equal(val.indices, other.indices)
    assert dataset_num_classes(cfg) == 4
    labels = [train[i][1] for i in range(len(train))]
    assert set(labels) == {0, 1, 2, 3}


def test_synthetic_classes_differ_more_than_images_within_a_class():
    cfg = DataConfig(synthetic_size=400, resolution=16, num_classes=2, augment=False)
    data = make_dataset(cfg, "train")
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    # Class means of the power spectrum differ: the classes are separable, not noise.
    power = torch.fft.fft2(images).abs().mean(1).flatten(1)
    gap = (power[labels == 0].mean(0) - power[labels == 1].mean(0)).norm()
    spread = power[labels == 0].std(0).norm() / (labels == 0).sum().sqrt()
    assert gap > 5 * spread


def test_augmentation_shapes_and_reproducible_per_epoch():
    cfg = DataConfig(synthetic_size=64, resolution=24, batch_size=8)
    loader = make_loader(cfg, "train")
    set_epoch(loader, 1)
    first = next(iter(loader))
    set_epoch(loader, 1)
    again = next(iter(loader))
    set_epoch(loader, 2)
    later = next(iter(loader))
    assert first[0].shape == (8, 3, 24, 24) and first[0].dtype == torch.float32
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], later[0])
    set_epoch(loader, 1, start_batch=1)
    assert torch.equal(next(iter(loader))[1], list(iter(make_epoch(cfg, 1)))[1][1])


def make_epoch(cfg, epoch):
    loader = make_loader(cfg, "train")
    set_epoch(loader, epoch)
    return loader


def test_eval_split_is_not_augmented_and_resolution_is_applied():
    cfg = DataConfig(synthetic_size=64, resolution=32)
    val = make_dataset(cfg, "val")
    assert torch.equal(val[0][0], val[0][0])
    resized = make_dataset(DataConfig(synthetic_size=64, resolution=16), "val")
    assert resized[0][0].shape == (3, 16, 16)


def test_cifar_format_files(tmp_path):
    root = write_cifar(tmp_path / "cifar", batches=3, per_batch=20)
    cfg = DataConfig(name="cifar10", root=str(root), resolution=32, val_fraction=0.25)
    train, val, test = (make_dataset(cfg, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (45, 15, 20)
    assert train[0][0].shape == (3, 32, 32) and dataset_num_classes(cfg) == 10
    upscaled = make_dataset(DataConfig(name="cifar10", root=str(root), resolution=40), "val")
    assert upscaled[0][0].shape == (3, 40, 40)


def test_cifar_folder_with_only_test_batch(tmp_path):
    root = write_cifar(tmp_path / "only_test", batches=0, per_batch=10)
    cfg = DataConfig(name="cifar10", root=str(root))
    assert len(make_dataset(cfg, "test")) == 10
    with pytest.raises(ConfigError, match="data_batch_1"):
        make_dataset(cfg, "train")


def test_cifar_without_test_batch_says_so(tmp_path):
    root = write_cifar(tmp_path / "no_test", batches=1, test=False)
    with pytest.raises(ConfigError, match="test_batch"):
        make_dataset(DataConfig(name="cifar10", root=str(root)), "test")


def test_malformed_cifar_file(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="data_batch_1.*not a CIFAR-10 python batch"):
        make_dataset(DataConfig(name="cifar10", root=str(root)), "train")


def test_imagefolder(tmp_path):
    root = write_imagefolder(tmp_path / "images")
    cfg = DataConfig(name="imagefolder", root=str(root), resolution=16, val_fraction=0.25,
                     batch_size=4)
    assert dataset_num_classes(cfg) == 3
    train, val = make_dataset(cfg, "train"), make_dataset(cfg, "val")
    assert (len(train), len(val)) == (9, 3)
    image, label = train[0]
    assert image.shape == (3, 16, 16) and label in (0, 1, 2)
    images, labels = next(iter(make_loader(cfg, "train")))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64
    with pytest.raises(ConfigError, match="test"):
        make_dataset(cfg, "test")


def test_imagefolder_with_train_and_test_folders(tmp_path):
    write_imagefolder(tmp_path / "set" / "train")
    write_imagefolder(tmp_path / "set" / "test", per_class=2)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "set"), resolution=16)
    assert len(make_dataset(cfg, "test")) == 6 and dataset_num_classes(cfg) == 3


@pytest.mark.parametrize("name", ["cifar10", "imagefolder"])
def test_bad_paths_name_the_path(tmp_path, name):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="nowhere.*no such folder"):
        make_dataset(DataConfig(name=name, root=str(missing)), "train")
    with pytest.raises(ConfigError, match="data.root"):
        make_dataset(DataConfig(name=name), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty"):
        make_dataset(DataConfig(name=name, root=str(tmp_path / "empty")), "train")


def test_bad_settings():
    with pytest.raises(ConfigError, match="data.name"):
        make_dataset(DataConfig(name="mnist"), "train")
    with pytest.raises(ConfigError, match="data.split"):
        make_dataset(DataConfig(), "holdout")
    with pytest.raises(ConfigError, match="val_fraction"):
        make_dataset(DataConfig(val_fraction=0.0), "val")


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="shared CIFAR-10 subset not present")
def test_shared_cifar_subset():
    cfg = DataConfig(name="cifar10", root=str(SHARED_CIFAR), val_fraction=0.1)
    val = make_dataset(cfg, "val")
    assert len(val) + len(make_dataset(cfg, "train")) == 5085
    assert val[0][0].shape == (3, 32, 32)
