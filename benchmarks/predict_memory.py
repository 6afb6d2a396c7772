"""Peak memory of predicting a folder: every image decoded at once vs ``batch_size`` at a time.

    python benchmarks/predict_memory.py [--sizes 5000 20000] [--side 32]

Writes N random PNGs into a temporary folder under /tmp and a checkpoint of a randomly
initialised ResNet-8 (the weights do not matter to memory), then runs each approach in a fresh
process and reads that process's peak resident memory (max RSS) from the kernel:

- baseline: import layerscope and load the checkpoint, predict nothing;
- all at once: what predict.py did before streaming (decode every file, stack, predict);
- streamed: ``FolderPrediction`` with batch_size 64, records into a CSV;
- predict.py: the command itself, end to end, writing a CSV.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from PIL import Image

from layerscope.models import cifar_resnet
from layerscope.training.hardware import machine_line

REPO = Path(__file__).resolve().parents[1]
HARNESS = {
    "baseline": """
        clf = load_classifier(ckpt)
    """,
    "all at once": """
        clf = load_classifier(ckpt)
        images = [clf.load(path) for path in image_files(folder)]
        clf.predict(torch.stack(images), batch_size=64)
    """,
    "streamed": """
        clf = load_classifier(ckpt)
        records = (r.record() for r in FolderPrediction(clf, image_files(folder), batch_size=64))
        write_csv(records, out)
    """,
}
PREAMBLE = """
    import sys, torch
    from pathlib import Path
    from layerscope.inference import image_files, load_classifier
    from layerscope.inference.predict import FolderPrediction, write_csv
    ckpt, folder, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
"""


def make_checkpoint(path: Path, side: int) -> Path:
    model = cifar_resnet(depth=8, in_channels=3, num_classes=10, image_size=side)
    config = {"_target_": "layerscope.models.cifar_resnet", "depth": 8, "in_channels": 3, "num_classes": 10,
              "image_size": side}
    info = {"name": "random", "classes": [f"class{i}" for i in range(10)], "in_channels": 3,
            "image_size": side, "mean": [0.5] * 3, "std": [0.25] * 3}
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model_config": config, "data_info": info}}, path)
    return path


def make_images(folder: Path, count: int, side: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for index in range(count):
        pixels = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=generator)
        Image.fromarray(pixels.numpy()).save(folder / f"{index:06d}.png")


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """(peak resident memory in MiB, seconds) of ``command`` run as a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:3]} failed: {process.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000], help="images per folder")
    parser.add_argument("--side", type=int, default=32, help="image side in pixels (the model's input)")
    args = parser.parse_args()
    print(f"{machine_line()}, torch {torch.__version__}, "
          f"ResNet-8 at {args.side}x{args.side}x3, batch_size 64")
    print(f"{'images':>8}  {'approach':<12}{'peak RSS':>12}{'seconds':>9}")
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="predict-memory-") as scratch:
        ckpt = make_checkpoint(Path(scratch) / "random.ckpt", args.side)
        for count in args.sizes:
            folder = Path(scratch) / f"images-{count}"
            folder.mkdir()
            make_images(folder, count, args.side)
            out = Path(scratch) / "predictions.csv"
            for name, body in HARNESS.items():
                code = textwrap.dedent(PREAMBLE) + textwrap.dedent(body)
                mib, seconds = peak_rss_mib([sys.executable, "-c", code, str(ckpt), str(folder), str(out)])
                print(f"{count:>8}  {name:<12}{mib:>8.0f} MiB{seconds:>9.1f}", flush=True)
            mib, seconds = peak_rss_mib([sys.executable, str(REPO / "predict.py"), f"ckpt_path={ckpt}",
                                         f"input={folder}", f"output={out}"])
            print(f"{count:>8}  {'predict.py':<12}{mib:>8.0f} MiB{seconds:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
