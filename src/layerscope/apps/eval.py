"""``python eval.py ckpt_path=...``: a checkpoint's test-split metrics, per class too."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from layerscope.apps.cli import run_hydra, write_json_atomic
from layerscope.errors import UserError
from layerscope.inference import Classifier, load_classifier


def data_config(cfg: DictConfig) -> DictConfig:
    """``data=`` if given, else the data config of the run that wrote the checkpoint."""
    if cfg.get("data") is not None:
        return cfg.data
    saved = Path(cfg.ckpt_path).expanduser().resolve().parent.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(f"no run config at {saved} to know the checkpoint's data: pass data=... too")
    # The run's own config resolves the data config's interpolations (seed, ...); its paths are
    # replaced by this command's, so data is looked for where this command says it lives.
    merged = OmegaConf.merge(OmegaConf.load(saved), {"paths": cfg.paths})
    return merged.data


def check_fits(clf: Classifier, info: dict[str, Any], data_name: str) -> None:
    """The data must have the checkpoint's image shape and classes."""
    mine = (clf.in_channels, clf.image_size, clf.image_size)
    theirs = (info["in_channels"], info["image_size"], info["image_size"])
    if mine != theirs or list(info["classes"]) != clf.classes:
        raise UserError(
            f"the checkpoint expects {'x'.join(map(str, mine))} images of {len(clf.classes)} classes "
            f"({', '.join(clf.classes[:4])}, ...); data={data_name} has {'x'.join(map(str, theirs))} "
            f"images of {len(info['classes'])} classes ({', '.join(info['classes'][:4])}, ...)"
        )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test-split accuracy, loss and per-class accuracy; metrics.json and predictions.csv."""
    clf = load_classifier(cfg.ckpt_path, cfg.device)
    datamodule = instantiate(data_config(cfg))
    datamodule.setup("test")
    check_fits(clf, datamodule.info, datamodule.name)
    test = datamodule.test
    predictions = clf.predict(test.images, batch_size=cfg.batch_size)
    predicted = predictions.indices
    labels = test.labels
    loss = F.nll_loss(predictions.probs.clamp_min(1e-12).log(), labels).item()
    per_class = {
        name: (predicted[labels == c] == c).float().mean().item() if (labels == c).any() else None
        for c, name in enumerate(clf.classes)
    }
    metrics = {
        "test/acc": (predicted == labels).float().mean().item(), "test/loss": loss,
        "test/per_class_acc": per_class, "images": len(labels), "data": datamodule.name,
        "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve()),
    }
    run_dir = Path(cfg.paths.output_dir)
    write_json_atomic(run_dir / "metrics.json", metrics)
    with open(run_dir / "predictions.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "label", "predicted", "prob"])
        probs = predictions.probs.max(dim=1).values
        for i, (y, p, q) in enumerate(zip(labels.tolist(), predicted.tolist(), probs.tolist(), strict=True)):
            writer.writerow([i, clf.classes[y], clf.classes[p], round(q, 6)])
    _print_table(metrics, run_dir)
    return metrics


def _print_table(metrics: dict[str, Any], run_dir: Path) -> None:
    width = max(len(name) for name in metrics["test/per_class_acc"])
    lines = [f"{'class':<{width}}  accuracy"]
    for name, acc in metrics["test/per_class_acc"].items():
        lines.append(f"{name:<{width}}  {'-' if acc is None else f'{acc:.4f}'}")
    lines += [
        f"{'all':<{width}}  {metrics['test/acc']:.4f}   (loss {metrics['test/loss']:.4f}, "
        f"{metrics['images']} {metrics['data']} test images)",
        f"Metrics:      {run_dir / 'metrics.json'}",
        f"Predictions:  {run_dir / 'predictions.csv'}",
    ]
    print("\n".join(lines), flush=True)


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-eval`` (and ``python eval.py``)."""
    return run_hydra(evaluate, config_name="eval", config_dir=config_dir)
