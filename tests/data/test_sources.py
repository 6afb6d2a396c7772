"""Real-data sources: IDX files, the Debian Fashion-MNIST copy, offline errors, image folders."""

from __future__ import annotations

import gzip
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import layerscope.data.torchvision_sets as tv_sets
from layerscope.data.idx import read_idx
from layerscope.data.imagefolder import ImageFolderSource, class_names
from layerscope.errors import UserError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(folder: Path, n: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


def test_read_idx_roundtrip_and_rejects_garbage(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert torch.equal(read_idx(tmp_path / "a.gz"), torch.from_numpy(array.astype(np.uint8)))
    (tmp_path / "bad").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1]))  # 9 promised, 1 given
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def test_idx_source_prefers_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw")
    monkeypatch.setattr(tv_sets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    splits = tv_sets.IdxSource(str(tmp_path), "fashion_mnist").load()
    assert splits.train.images.shape == (20, 1, 28, 28)
    assert splits.classes[-1] == "ankle boot"


@pytest.mark.parametrize(
    ("where", "advice"),
    [
        ("root", "replace it with the original file"),
        ("FashionMNIST/raw", "torchvision downloads it again"),
        ("debian", "sudo apt-get install --reinstall dataset-fashion-mnist"),
    ],
)
def test_a_truncated_idx_file_is_named_in_one_line_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, advice: str
) -> None:
    folder = tmp_path / "system" if where == "debian" else tmp_path / "root" / where.replace("root", "")
    write_fake_mnist(folder, n=200)
    monkeypatch.setattr(tv_sets, "DEBIAN_FASHION_MNIST", tmp_path / "system")
    damaged = folder / "t10k-images-idx3-ubyte.gz"
    cut = damaged.read_bytes()[:1000]  # a download or copy that stopped early
    damaged.write_bytes(cut)
    with pytest.raises(UserError) as err:
        tv_sets.IdxSource(str(tmp_path / "root"), "fashion_mnist", download=False).load()
    message = str(err.value)
    assert "\n" not in message and str(damaged) in message and "damaged" in message and advice in message
    assert damaged.read_bytes() == cut  # what the user placed is left as it was


def test_idx_images_and_labels_of_different_lengths_are_refused(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, n=20)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19))
    with pytest.raises(UserError, match=r"images and labels of one split must match"):
        tv_sets.IdxSource(str(tmp_path), "mnist", download=False).load()


DEBIAN = tv_sets.DEBIAN_FASHION_MNIST


@pytest.mark.skipif(
    not DEBIAN.is_dir() and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed (make test installs it)",
)
def test_fashion_mnist_loads_from_debian_files(tmp_path: Path) -> None:
    splits = tv_sets.IdxSource(str(tmp_path), "fashion_mnist", download=False).load()
    assert splits.train.images.shape == (60000, 1, 28, 28)
    assert splits.test.images.shape == (10000, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10


def test_offline_without_data_names_all_three_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tv_sets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setattr("torchvision.datasets.FashionMNIST", no_network)
    with pytest.raises(UserError) as err:
        tv_sets.IdxSource(str(tmp_path / "data"), "fashion_mnist").load()
    message = str(err.value)
    for expected in ("data.root", "dataset-fashion-mnist", "download", str(tmp_path / "absent")):
        assert expected in message
    assert "\n" not in message


def test_mnist_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr("torchvision.datasets.MNIST", no_network)
    with pytest.raises(UserError, match=r"MNIST not found.*download failed"):
        tv_sets.IdxSource(str(tmp_path), "mnist").load()


def test_cifar10_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Dataset not found or corrupted")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", no_network)
    with pytest.raises(UserError, match=r"CIFAR-10 is not in data\.root"):
        tv_sets.Cifar10Source(str(tmp_path)).load()


def make_folder(root: Path, per_class: int = 4) -> None:
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_loads_resizes_and_skips_bad_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_folder(tmp_path)
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    splits = ImageFolderSource(str(tmp_path), image_size=16).load()
    assert splits.classes == ["cats", "dogs"]
    assert splits.train.images.shape == (8, 3, 16, 16)
    assert splits.train.labels.tolist() == [0] * 4 + [1] * 4
    assert "notes.txt" in caplog.text
    with pytest.raises(UserError, match=r"notes\.txt.*on_bad_file=skip"):
        ImageFolderSource(str(tmp_path), image_size=16, on_bad_file="fail").load()
    grey = ImageFolderSource(str(tmp_path), image_size=8, in_channels=1).load()
    assert grey.train.images.shape == (8, 1, 8, 8)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a folder"):
        class_names(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(UserError, match="one sub-folder per class"):
        class_names(tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="no readable images"):
        ImageFolderSource(str(tmp_path)).load()


def test_processes_sharing_a_data_folder_download_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DDP ranks (here threads, which the file lock keeps apart the same way) download once."""
    downloads = []

    def slow_download(self: tv_sets.IdxSource, tv_name: str, searched: list[Path]) -> None:
        downloads.append(tv_name)
        time.sleep(0.5)  # long enough for the other loader to arrive and wait
        write_fake_mnist(self.root / tv_name / "raw")

    monkeypatch.setattr(tv_sets.IdxSource, "_download", slow_download)
    with ThreadPoolExecutor(2) as pool:
        loaded = list(pool.map(lambda _: tv_sets.IdxSource(str(tmp_path), "mnist").load(), range(2)))
    assert downloads == ["MNIST"]
    assert all(torch.equal(s.train.images, loaded[0].train.images) for s in loaded)
