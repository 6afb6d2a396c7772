"""Caches that heal: a damaged shapes cache is rendered again, two processes render it once."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from layerscope.data.cache import checksum_path, fingerprint, read_verified
from layerscope.data.shapes import ShapesSource, generate

TRAIN_CACHE = "train-300-24px-seed0-v2.pt"


def _source(root: Path) -> ShapesSource:
    return ShapesSource(str(root), num_train=300, num_test=100, image_size=24)


def test_a_new_cache_is_written_with_its_size_and_checksum(tmp_path: Path) -> None:
    _source(tmp_path).load()
    path = tmp_path / "shapes" / TRAIN_CACHE
    size, _ = checksum_path(path).read_text().split()
    assert int(size) == path.stat().st_size
    assert checksum_path(path).read_text() == fingerprint(path.read_bytes())
    assert read_verified(path)[0] == path.read_bytes()


@pytest.mark.parametrize("damage", ["cut to 1,000 bytes", "one byte flipped", "checksum missing"])
def test_a_damaged_cache_is_rendered_again(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    _source(tmp_path).load()
    path = tmp_path / "shapes" / TRAIN_CACHE
    data = path.read_bytes()
    if damage == "cut to 1,000 bytes":
        path.write_bytes(data[:1000])
    elif damage == "one byte flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    else:
        checksum_path(path).unlink()
    with caplog.at_level(logging.INFO, logger="layerscope.data.cache"):
        healed = _source(tmp_path).load().train
    assert torch.equal(healed.images, generate(300, 24, 0, "train").images)
    assert path.read_bytes() == data  # the same bytes as the first render, checksum and all
    assert read_verified(path)[0] == data
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [warnings[0]] and str(path) in warnings[0] and "rendering it again" in warnings[0]


def test_a_cache_that_verifies_but_holds_other_images_is_rendered_again(tmp_path: Path) -> None:
    source = _source(tmp_path)
    source.load()
    path = tmp_path / "shapes" / TRAIN_CACHE
    other = (tmp_path / "shapes" / "test-100-24px-seed0-v2.pt").read_bytes()  # 100 images, not 300
    path.write_bytes(other)
    checksum_path(path).write_text(fingerprint(other))
    assert len(source.load().train) == 300
    assert read_verified(path)[0] != other


RENDER_ONCE = textwrap.dedent("""
    import hashlib, logging, sys, time
    from pathlib import Path
    from layerscope.data.shapes import ShapesSource
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    root, go = Path(sys.argv[1]), Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():  # both processes start loading at the same moment
        time.sleep(0.01)
    splits = ShapesSource(str(root), num_train=20000, num_test=1000, image_size=32).load()
    print(hashlib.sha256(splits.train.images.numpy().tobytes()).hexdigest(), flush=True)
""")


def test_two_processes_render_a_missing_cache_once(tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", RENDER_ONCE, str(tmp_path), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    digests = {out.strip() for out, _ in outputs}
    assert len(digests) == 1  # both processes hold the same images
    train = tmp_path / "shapes" / "train-20000-32px-seed0-v2.pt"
    renders = [line for _, err in outputs for line in err.splitlines() if line.startswith("rendering")]
    test = train.with_name("test-1000-32px-seed0-v2.pt")
    assert sorted(renders) == sorted([f"rendering {train}", f"rendering {test}"])  # each once, by one of them
    assert read_verified(train)[0] is not None
    assert not list((tmp_path / "shapes").glob("*.tmp"))  # no half-written file left behind
