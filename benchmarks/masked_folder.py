"""The dissection on an image folder with the user's own masks, checked against ``shapes`` itself.

    python benchmarks/masked_folder.py                   # 6,000 training images, 6 epochs
    python benchmarks/masked_folder.py --epochs 2        # shorter

Writes ``shapes`` images as PNG files into a pre-split folder (``train/``, ``val/``, ``test/``, one
sub-folder per class) and, for the validation images, their exact part-edge, part and object masks
in the layout ``data=imagefolder`` reads (``masks/concepts.yaml``, ``masks/<concept>/<image>.png``,
``layerscope.data.folder_masks``). Then it trains ``python train.py data=imagefolder`` on the folder
with ``insight=default`` and prints the run's dissection shares per stage at step 0 and at the end
(``benchmarks/layer_story_numbers.py``): the measurement a user gets on their own masked photos,
where the right answer is known, since the masks are the ones ``data=shapes`` dissects with.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from layerscope.data.shapes import CLASS_NAMES, concepts, generate, render_images_with_maps
from layerscope.training.hardware import machine_line

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def write_split(root: Path, split: str, count: int, seed: int, masks: bool) -> None:
    """``count`` shapes images as ``root/split/<class>/<n>.png``, with masks if asked: drawn as
    ``shapes`` draws its training images (``split=train``) or its test images (the others), with
    generator seed ``seed``."""
    drawn_as = "train" if split == "train" else "test"
    if masks:
        images, labels, maps = render_images_with_maps(torch.arange(count), SIZE, seed, drawn_as)
        found = concepts(maps, labels)
    else:
        drawn = generate(count, SIZE, seed, drawn_as)
        images, labels, found = drawn.images, drawn.labels, None
    for n, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        relative = Path(split) / CLASS_NAMES[label] / f"{n}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / relative)
        if found is None:
            continue
        for k, name in enumerate(found.names):
            path = root / "masks" / f"{found.kinds[k]}_{name}" / f"{relative}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(found.masks[n, k].numpy().astype(np.uint8) * 255).save(path)
    if found is not None:
        pairs = zip(found.names, found.kinds, strict=True)
        lines = [f"{kind}_{name}: {kind}\n" for name, kind in pairs]
        (root / "masks" / "concepts.yaml").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6000, help="training images")
    parser.add_argument("--val", type=int, default=300, help="validation images (masked)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "masked_folder")
    args = parser.parse_args()
    folder = REPO / "data" / "masked_shapes"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    write_split(folder, "train", args.train, 0, masks=False)
    write_split(folder, "val", args.val, 1, masks=True)  # seed 1: other images than the test split's
    write_split(folder, "test", 500, 0, masks=False)
    print(f"{machine_line()}\nwrote {folder} in {time.perf_counter() - started:.0f} s")
    shutil.rmtree(args.out, ignore_errors=True)
    command = [sys.executable, str(REPO / "train.py"), "data=imagefolder", f"data.root={folder}",
               f"data.image_size={SIZE}", "model=deep", f"trainer.max_epochs={args.epochs}",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={args.out}"]
    print(" ".join(command[1:]))
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"trained in {time.perf_counter() - started:.0f} s")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "layer_story_numbers.py"), str(args.out)],
                   check=True)


if __name__ == "__main__":
    main()
