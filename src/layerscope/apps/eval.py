"""``python eval.py ckpt_path=...``: a checkpoint's test-split metrics, per class too.

The test runs as training's does (the same LightningModule test step, with the test-time views
the run was trained with), so ``test/acc`` and ``test/loss`` are those in the run's metrics.json.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from layerscope import ood
from layerscope.apps.cli import run_hydra, write_json_atomic
from layerscope.checkpoint import check_fits, read_checkpoint, run_folder
from layerscope.errors import UserError
from layerscope.inference.loading import choose_device
from layerscope.training.module import ImageClassifier
from layerscope.training.precision import resolve as resolve_precision
from layerscope.trust import data_builders, trusted

ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "mps": "mps"}  # torch's device types -> Lightning's


def data_config(cfg: DictConfig) -> Any:
    """``data=`` if given, else the data config of the run that wrote the checkpoint, checked.

    The saved config is a file, not the user's choice: it may name only the project's own data
    module and sources.
    """
    if cfg.get("data") is not None:
        return cfg.data
    saved = run_folder(cfg.ckpt_path) / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(f"no run config at {saved} to know the checkpoint's data: pass data=... too")
    # The run's own config resolves the data config's interpolations (seed, ...); its paths are
    # replaced by this command's, so data is looked for where this command says it lives.
    merged = OmegaConf.merge(OmegaConf.load(saved), {"paths": cfg.paths})
    return trusted(OmegaConf.to_container(merged.data, resolve=True), data_builders(), "data", str(saved))


def checkpoint_preprocessing(info: dict[str, Any]) -> dict[str, Any]:
    """The normalisation and evaluation resize the model was trained with, from its checkpoint's
    data info: the test images must reach the model exactly as the validation images did in training."""
    return {"mean": list(info["mean"]), "std": list(info["std"]), "resize_size": info["resize_size"]}


def trainer_placement(device: str) -> dict[str, Any]:
    """``device=cuda:1`` (or ``auto``: a CUDA GPU where there is one) as Lightning's ``accelerator``
    and ``devices``."""
    try:
        where = torch.device(choose_device(device))
    except RuntimeError as err:
        raise UserError(f"device={device} is not a device: use cpu, cuda, cuda:1, ...") from err
    if where.type not in ACCELERATORS:
        raise UserError(f"device={device} is not supported: use one of {', '.join(ACCELERATORS)}")
    devices = [where.index] if where.index is not None and where.type != "cpu" else 1
    return {"accelerator": ACCELERATORS[where.type], "devices": devices}


class KeepLogits(L.Callback):
    """Keeps the logits of every test batch (the module's test step returns them), in order."""

    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.logits.append(outputs.detach().float().cpu())


def tested_module(cfg: DictConfig) -> ImageClassifier:
    """The LightningModule as the training run tested it: its weights and its test-time views."""
    return ImageClassifier.from_checkpoint(read_checkpoint(cfg.ckpt_path))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test-split accuracy, loss and per-class accuracy; metrics.json and predictions.csv."""
    placement = trainer_placement(cfg.device)
    data = data_config(cfg)  # checked before anything is built
    module = tested_module(cfg)
    batch_size = {"eval_batch_size": cfg.batch_size} if cfg.batch_size else {}
    datamodule = instantiate(data, **batch_size, **checkpoint_preprocessing(module.hparams["data_info"]))
    datamodule.setup("test")
    check_fits(module.hparams["data_info"], datamodule.info, "pass data=... as in the training run")
    kept = KeepLogits()
    # The arithmetic the training run chose on this machine (auto), so that eval repeats its figures.
    precision = resolve_precision(cfg.get("precision", "auto"), placement["accelerator"])
    trainer = L.Trainer(**placement, precision=precision.precision, callbacks=[kept], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=cfg.paths.output_dir)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    logits, labels = torch.cat(kept.logits), datamodule.test.labels
    predicted = logits.argmax(dim=1)
    classes = datamodule.info["classes"]
    per_class = {
        name: (predicted[labels == c] == c).float().mean().item() if (labels == c).any() else None
        for c, name in enumerate(classes)
    }
    metrics = {
        "test/acc": results["test/acc"], "test/loss": results["test/loss"],
        "test/per_class_acc": per_class, "images": len(labels), "data": datamodule.name,
        "test_time_flip": module.test_time_flip, "test_time_shift": module.test_time_shift,
        "precision": precision.precision, "precision_reason": precision.reason,
        "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve()),
    }
    if cfg.calibrate:
        metrics["ood_calibration"] = calibrate(trainer, module, datamodule, cfg.ckpt_path).to_dict()
    run_dir = Path(cfg.paths.output_dir)
    write_json_atomic(run_dir / "metrics.json", metrics)
    with open(run_dir / "predictions.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "label", "predicted", "prob"])
        probs = logits.softmax(dim=1).max(dim=1).values
        for i, (y, p, q) in enumerate(zip(labels.tolist(), predicted.tolist(), probs.tolist(), strict=True)):
            writer.writerow([i, classes[y], classes[p], round(q, 6)])
    _print_table(metrics, run_dir)
    return metrics


def calibrate(
    trainer: L.Trainer, module: ImageClassifier, datamodule: Any, ckpt_path: str
) -> ood.Calibration:
    """Calibrate the out-of-distribution thresholds on the run's validation images, as training
    does at every validation pass, and store them in the checkpoint: for one written before
    calibration existed, or a mid-epoch last.ckpt."""
    trainer.validate(module, datamodule=datamodule, verbose=False)
    assert module.ood_calibration is not None, "a validation pass calibrates the module"
    calibration = read_checkpoint(ckpt_path).store_ood_calibration(module.ood_calibration)
    score = calibration.score
    print(f"Calibrated: {ckpt_path}: {score} <= {calibration.thresholds[score]:.4f} keeps "
          f"{calibration.kept:.0%} of {calibration.images} validation images", flush=True)
    return calibration


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
