"""How far a linear classifier on raw pixels gets: the bar a deep network has to clear.

Multinomial logistic regression (one ``nn.Linear`` from pixels to classes, softmax loss) trained
to convergence with full-batch L-BFGS on the same train/val/test split that ``train.py`` uses.

    python benchmarks/raw_pixel_baseline.py            # shapes
    python benchmarks/raw_pixel_baseline.py fashion_mnist
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from layerscope.apps.cli import default_config_dir, register_resolvers


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, steps: int) -> torch.nn.Linear:
    linear = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def accuracy(linear: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (linear(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="shapes", help="a conf/data option")
    parser.add_argument("--steps", type=int, default=300, help="L-BFGS iterations")
    args = parser.parse_args()
    register_resolvers()
    with initialize_config_dir(str(default_config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={args.data}", "paths.data_dir=data",
                                          "paths.output_dir=outputs"])
    dm = instantiate(cfg.data)
    dm.setup()
    flat = {name: (dm.preprocess(part.images).flatten(1), part.labels)
            for name, part in (("train", dm.train), ("val", dm.val), ("test", dm.test))}
    best = None
    started = time.perf_counter()
    for l2 in (1e-5, 1e-4, 1e-3):  # pick the weight penalty on the validation split
        linear = fit_linear(*flat["train"], dm.num_classes, l2, args.steps)
        val = accuracy(linear, *flat["val"])
        if best is None or val > best[0]:
            best = (val, l2, linear)
    val, l2, linear = best
    print(f"data={args.data}  linear classifier on raw pixels  l2={l2:g}")
    print(f"train acc {accuracy(linear, *flat['train']):.4f}  val acc {val:.4f}  "
          f"test acc {accuracy(linear, *flat['test']):.4f}  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
