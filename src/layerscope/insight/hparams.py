"""The HPARAMS dashboard: each run's settings beside its final accuracy, to compare runs."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

# The settings worth comparing across runs; everything else stays in the run's .hydra/config.yaml.
HPARAM_KEYS = ("model", "data.name", "data.batch_size", "data.train_size", "optimizer", "scheduler",
               "trainer.max_epochs", "module.label_smoothing", "seed")


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The HPARAM_KEYS of ``cfg`` as flat ``dotted.name: value`` pairs (numbers, strings, booleans)."""
    flat: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}.{key}", inner)
        elif value is None or isinstance(value, int | float | str | bool):
            flat[prefix] = "none" if value is None else value
        else:
            flat[prefix] = str(value)

    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        add(key, OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value)
    return {k: v for k, v in flat.items() if not k.endswith("._partial_")}


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Write the run's settings with its final val/test accuracy and loss to TensorBoard."""
    final = {f"hparams/{k.replace('/', '_')}": float(v) for k, v in metrics.items()
             if k in ("val/acc", "test/acc", "test/loss") and v is not None}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and final:
            logger.log_hyperparams(flat_hparams(cfg), metrics=final)
            logger.finalize("success")
