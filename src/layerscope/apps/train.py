"""``python train.py``: compose the config, train, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from layerscope.apps.cli import default_config_dir, register_resolvers, run_hydra, write_json_atomic
from layerscope.errors import UserError
from layerscope.files import remove_unfinished
from layerscope.inference.loading import check_fits, read_checkpoint
from layerscope.inference.trust import current_targets
from layerscope.insight.hparams import log_hparams
from layerscope.training.callbacks import TrainSpeedMonitor
from layerscope.training.timing import PhaseTimer, breakdown_line, process_start_time

log = logging.getLogger(__name__)

# Our data already sits in memory as tensors: extra loader workers would only add overhead.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` describes and return its final metrics."""
    started = time.perf_counter()
    timer = PhaseTimer()
    startup = _startup_seconds()
    timer.add("start-up", startup)
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    resume_from = _checkpoint_to_resume(cfg, run_dir)
    with timer.phase("data set-up"):
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
    with timer.phase("building"):
        model_config = OmegaConf.to_container(cfg.model, resolve=True)
        # Built as a partial first, so that Hydra leaves the plain model config (which holds a
        # _target_ of its own) for the module to instantiate and to store in checkpoints.
        module = instantiate(cfg.module, _partial_=True)(
            model_config=model_config,
            data_info=datamodule.info,
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        )
        if resume_from:
            _check_same_setup(resume_from, model_config, datamodule.info)
        callbacks = _instantiate_all(cfg.get("callbacks")) + _instantiate_all(cfg.get("insight"))
        loggers = _instantiate_all(cfg.get("logger"))
        # The timer is Lightning's profiler unless the config asks for one of Lightning's own.
        profiler = {} if cfg.trainer.get("profiler") else {"profiler": timer.profiler}
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[*callbacks, timer], logger=loggers or False,
                                         **profiler)

    fit_started = time.perf_counter()
    # Checkpoints hold tensors and plain values only: loading them can never run code.
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    fit_seconds = time.perf_counter() - fit_started

    metrics: dict[str, Any] = {}
    checkpoint = trainer.checkpoint_callback
    best_path = getattr(checkpoint, "best_model_path", "") or None
    if cfg.get("test") and not trainer.interrupted:
        with timer.phase("test"):
            results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, weights_only=True)
        metrics.update(results[0] if results else {})
    speed = next((c for c in callbacks if isinstance(c, TrainSpeedMonitor)), None)
    best_score = getattr(checkpoint, "best_model_score", None)
    total_seconds = startup + time.perf_counter() - started
    metrics.update({
        "val/acc": float(best_score) if best_score is not None else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        # None when this process trained nothing (a resume of a finished run only tests again).
        "train/img_per_s": round(speed.images_per_second, 1) if speed and speed.images else None,
        "fit_seconds": round(fit_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        # Where total_seconds went; "start-up" is 0 from Python and for later jobs of a sweep.
        "seconds_by_phase": timer.seconds(total_seconds),
        "model": cfg.model._target_,
        "data": datamodule.name,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "best_checkpoint": best_path,
    })
    if trainer.is_global_zero:
        log_hparams(trainer, cfg, metrics)
        write_json_atomic(run_dir / "metrics.json", metrics)
        _print_summary(run_dir, metrics)
    return metrics


# When the `python train.py` process started; the first run charges the time since then to start-up.
_process_started: float | None = None


def _startup_seconds() -> float:
    """Seconds from process start to now (imports, Hydra) for the first run of ``main()``; else 0."""
    global _process_started
    started, _process_started = _process_started, None
    return max(0.0, time.time() - started) if started is not None else 0.0


def _checkpoint_to_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """``ckpt_path``, or with ``resume=auto`` this run folder's ``last.ckpt`` if there is one."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume not in (False, None, "auto"):
        raise UserError(f"resume={resume} is not an option: use resume=auto or leave it out")
    if resume == "auto" and ckpt_path:
        raise UserError("give either ckpt_path=... or resume=auto, not both")
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        for stale in remove_unfinished(last.parent):
            log.info("Removed %s, left by a save that was cut short", stale)
        if not last.is_file():
            log.info("resume=auto: no %s yet, starting afresh", last)
            return None
        ckpt_path = str(last)
    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)
    return ckpt_path or None


def _check_same_setup(ckpt_path: str, model_config: Any, data_info: dict[str, Any]) -> None:
    """A checkpoint continues only the training that made it: same model, same classes and shapes."""
    saved = read_checkpoint(ckpt_path)["hyper_parameters"]  # a damaged or foreign file ends here
    resume = "resume with the overrides that started it"
    if current_targets(saved["model_config"]) != model_config:
        raise UserError(
            f"{ckpt_path} was trained with another model or data ({saved['model_config'].get('_target_')} "
            f"on {saved['data_info'].get('name')}): {resume}"
        )
    check_fits(saved["data_info"], data_info, resume)


def _print_summary(run_dir: Path, metrics: dict[str, Any]) -> None:
    test_acc = metrics.get("test/acc")
    val_acc = metrics.get("val/acc")
    lines = [
        "",
        f"Run folder:      {run_dir}",
        f"Best checkpoint: {metrics.get('best_checkpoint')}"
        + (f"  (val/acc {val_acc:.4f})" if val_acc is not None else ""),
        f"Test accuracy:   {test_acc:.4f}" if test_acc is not None else "Test accuracy:   not run",
        f"Training speed:  {metrics.get('train/img_per_s')} images/s over "
        f"{metrics.get('epochs')} epochs in {metrics.get('fit_seconds')} s"
        if metrics.get("train/img_per_s")
        else f"Training:        already finished ({metrics.get('epochs')} epochs)",
        f"Time:            {breakdown_line(metrics['seconds_by_phase'])}",
        f"Metrics:         {run_dir / 'metrics.json'}",
        f"TensorBoard:     tensorboard --logdir {run_dir}",
    ]
    print("\n".join(lines), flush=True)


def train_with(
    overrides: list[str], output_dir: str | Path, data_dir: str | Path | None = None,
    config_dir: Path | None = None,
) -> dict[str, Any]:
    """Train as ``python train.py OVERRIDES`` would, from Python (a notebook): returns the metrics.

    The run folder is ``output_dir``; data is looked for (and cached) under ``data_dir``.
    """
    from hydra import compose, initialize_config_dir

    register_resolvers()
    paths = [f"paths.output_dir={Path(output_dir).resolve()}",
             f"paths.data_dir={Path(data_dir or 'data').resolve()}"]
    with initialize_config_dir(config_dir=str(config_dir or default_config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*paths, *overrides])
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return train(cfg)


def task(cfg: DictConfig) -> float | None:
    """Hydra task: train and return val accuracy (what hyper-parameter sweeps maximise)."""
    return train(cfg).get("val/acc")


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-train`` (and ``python train.py``)."""
    global _process_started
    _process_started = process_start_time()
    return run_hydra(task, config_name="train", config_dir=config_dir)
