"""``python train.py``: compose the config, train, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from layerscope.apps.cli import default_config_dir, register_resolvers, run_hydra, write_json_atomic
from layerscope.apps.run_lock import run_folder_locked
from layerscope.apps.sweep_ranks import ranks_run_this_job_only
from layerscope.checkpoint import read_checkpoint
from layerscope.errors import UserError
from layerscope.files import remove_unfinished
from layerscope.insight import Insight
from layerscope.insight.callback import MOMENTS
from layerscope.insight.hparams import flat_hparams, log_hparams
from layerscope.models.adapted import weights_preprocessing
from layerscope.training import gpu
from layerscope.training.callbacks import TrainSpeedMonitor
from layerscope.training.precision import resolve as resolve_precision
from layerscope.training.timing import PhaseTimer, breakdown_line, process_start_time

log = logging.getLogger(__name__)

# Lightning advises more loader workers whenever a loader has few. Tensors in memory are gathered a
# batch at a time, where workers only add overhead; streamed folders get them from
# data.num_workers=auto (one per core, up to 4). The advice fits neither, so it is not shown.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")

# A best val/acc less than this share of the way from guessing (1 / classes) to perfect: nothing learned.
CHANCE_MARGIN = 0.05


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def train(cfg: DictConfig, process_started: float | None = None) -> dict[str, Any]:
    """Train one model as ``cfg`` describes and return its final metrics.

    ``process_started`` (``time.time()`` seconds) is when the process began: the time from then on
    (imports, Hydra) counts as start-up. Leave it out from Python and for the later jobs of a sweep.
    """
    started = time.perf_counter()
    timer = PhaseTimer()
    startup = max(0.0, time.time() - process_started) if process_started is not None else 0.0
    timer.add("start-up", startup)
    run_dir = Path(cfg.paths.output_dir)
    _check_logger_libraries(cfg.get("logger"))
    L.seed_everything(cfg.seed, workers=True)
    resume_from = _checkpoint_to_resume(cfg, run_dir)
    with timer.phase("data set-up"):
        datamodule = instantiate(cfg.data, **pretrained_preprocessing(cfg))
        datamodule.setup("fit")
    with timer.phase("building"):
        module = _build_module(cfg, datamodule.info, resume_from)
        precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
        insight = build_insight(cfg.get("insight"))
        trainer = _build_trainer(cfg, timer, precision.precision, insight)
        device = trainer.strategy.root_device
        float32 = gpu.set_float32_precision(cfg.get("float32_matmul_precision", "high"), device)
        gpu.check_compile(bool(cfg.module.get("compile")), device)
        _log_settings(trainer, cfg)  # after the last check that can stop the run: a stopped run logs nothing
    with ranks_run_this_job_only(trainer.num_devices * trainer.num_nodes):
        fit_seconds = _fit(trainer, module, datamodule, resume_from)
        metrics = _test_best_checkpoint(cfg, trainer, module, datamodule, timer)
    metrics.update(_run_facts(cfg, trainer, module, datamodule.name, fit_seconds))
    metrics.update(precision=precision.precision, precision_reason=precision.reason)
    if device.type == "cuda":  # what only a GPU run has to say
        metrics.update(float32_matmul_precision=float32, gpu_peak_memory_gib=gpu.peak_memory_gib(device))
    total_seconds = startup + time.perf_counter() - started
    # Where total_seconds went; "start-up" is 0 from Python and for later jobs of a sweep.
    metrics.update(total_seconds=round(total_seconds, 1), seconds_by_phase=timer.seconds(total_seconds),
                   insight_seconds_by_view=insight.timer.by_view() if insight else {},
                   insight_seconds_by_moment=(insight.timer.by_moment() if insight
                                              else dict.fromkeys(MOMENTS, 0.0)))
    if trainer.is_global_zero:
        log_hparams(trainer, cfg, metrics)
        write_json_atomic(run_dir / "metrics.json", metrics)
        _print_summary(run_dir, metrics, chance=1 / len(datamodule.info["classes"]))
    return metrics


def pretrained_preprocessing(cfg: DictConfig) -> dict[str, Any]:
    """Data settings that pretrained ``model.weights`` bring: their normalisation, and their
    evaluation resize scaled to ``data.image_size`` (256 for 224 becomes 73 for 64). Values the
    data config sets itself win."""
    if cfg.model.get("weights") is None:  # read before the rest: data keys it needs may be unset
        return {}
    found = weights_preprocessing({key: cfg.model.get(key) for key in ("_target_", "arch", "weights")})
    if found is None:
        return {}
    settings: dict[str, Any] = {}
    if cfg.data.get("mean") is None or cfg.data.get("std") is None:
        grey = cfg.data.in_channels == 1  # grey images are repeated into the three channels
        settings["mean"] = [sum(found.mean) / 3] if grey else list(found.mean)
        settings["std"] = [sum(found.std) / 3] if grey else list(found.std)
    if cfg.data.get("resize_size") is None:
        settings["resize_size"] = round(cfg.data.image_size * found.resize_size / found.crop_size)
    log.info("model.weights=%s: normalisation and evaluation resize from the weights: %s (they were "
             "trained at %d px; data.image_size=%d)", cfg.model.weights, settings, found.crop_size,
             cfg.data.image_size)
    return settings


def _build_module(cfg: DictConfig, data_info: dict[str, Any], resume_from: str | None) -> L.LightningModule:
    model_config = OmegaConf.to_container(cfg.model, resolve=True)
    if resume_from:
        # A damaged or foreign file, or one from another model or data, ends here in one line.
        read_checkpoint(resume_from).check_continues(model_config, data_info)
    # Built as a partial first, so that Hydra leaves the plain model config (which holds a
    # _target_ of its own) for the module to instantiate and to store in checkpoints.
    return instantiate(cfg.module, _partial_=True)(
        model_config=model_config,
        data_info=data_info,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )


def _check_logger_libraries(loggers: DictConfig | None) -> None:
    """logger=mlflow without MLflow installed ends here, in one line, before any data is read."""
    targets = {c.get("_target_") for c in (loggers or {}).values() if c is not None}
    if "lightning.pytorch.loggers.MLFlowLogger" in targets and importlib.util.find_spec("mlflow") is None:
        raise UserError("logger=mlflow needs MLflow: pip install -e '.[mlflow]'")


def _log_settings(trainer: L.Trainer, cfg: DictConfig) -> None:
    """The run's settings, as the HPARAMS dashboard lists them, to every logger but TensorBoard.

    TensorBoard gets them at the end, with the final results (``log_hparams``). The others get them
    now, so that a run stopped half-way still shows how it was set up; the scalars and the test
    results reach every logger through Lightning.
    """
    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(flat_hparams(cfg))


def build_insight(config: DictConfig | None) -> Insight | None:
    """The insight callback ``config`` describes, or None where it has no views (``insight=off``)."""
    if not config:
        return None
    insight = instantiate(config)
    if not isinstance(insight, Insight):
        what = f"a {type(insight).__name__}" if "_target_" in config else "views without a _target_"
        raise UserError(
            f"insight is {what}, not layerscope.insight.Insight: begin the insight config with "
            "_target_: layerscope.insight.Insight and put the views under it (as conf/insight/default.yaml)"
        )
    return insight if insight.views else None


def _build_trainer(
    cfg: DictConfig, timer: PhaseTimer, precision: str, insight: Insight | None = None
) -> L.Trainer:
    callbacks = _instantiate_all(cfg.get("callbacks")) + ([insight] if insight is not None else [])
    loggers = _instantiate_all(cfg.get("logger"))
    # The timer is Lightning's profiler unless the config asks for one of Lightning's own.
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": timer.profiler}
    benchmark = cudnn_autotuning(cfg.trainer.get("deterministic"), cfg.trainer.get("benchmark"))
    return instantiate(cfg.trainer, precision=precision, benchmark=benchmark, callbacks=[*callbacks, timer],
                       logger=loggers or False, **profiler)


def cudnn_autotuning(deterministic: bool | str | None, benchmark: bool | None) -> bool | None:
    """``trainer.benchmark`` as set, except that determinism switches cuDNN autotuning off.

    Autotuning picks each convolution's algorithm by timing the candidates, so two runs can pick
    differently, and PyTorch ignores ``cudnn.deterministic`` while it is on: ``trainer=gpu`` asks
    for it, ``trainer.deterministic=true`` must still mean reproducible.
    """
    if deterministic and benchmark:
        log.info("trainer.deterministic=%s: cuDNN autotuning off (trainer.benchmark=false)", deterministic)
        return False
    return benchmark


def _fit(trainer: L.Trainer, module: L.LightningModule, datamodule: Any, resume_from: str | None) -> float:
    """Train; return the seconds it took."""
    fit_started = time.perf_counter()
    # Checkpoints hold tensors and plain values only: loading them can never run code.
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    return time.perf_counter() - fit_started


def _test_best_checkpoint(
    cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, timer: PhaseTimer
) -> dict[str, Any]:
    """``test/acc`` and ``test/loss`` of the best checkpoint; nothing if the config or a signal says no."""
    if not cfg.get("test") or trainer.interrupted:
        return {}
    with timer.phase("test"):
        results = trainer.test(module, datamodule=datamodule, ckpt_path=_best_checkpoint(trainer),
                               weights_only=True)
    return dict(results[0]) if results else {}


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    return getattr(trainer.checkpoint_callback, "best_model_path", "") or None


def _run_facts(
    cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, data_name: str, fit_seconds: float
) -> dict[str, Any]:
    """What metrics.json records besides the test results: the run's best val/acc, length, speed, model."""
    speed = next((c for c in trainer.callbacks if isinstance(c, TrainSpeedMonitor)), None)
    best_score = getattr(trainer.checkpoint_callback, "best_model_score", None)
    return {
        "val/acc": float(best_score) if best_score is not None else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        # None when this process trained nothing (a resume of a finished run only tests again).
        "train/img_per_s": round(speed.images_per_second, 1) if speed and speed.images else None,
        "train/images": speed.images if speed else None,  # trained on, by every process together
        "fit_seconds": round(fit_seconds, 1),
        "model": cfg.model._target_,
        "data": data_name,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "best_checkpoint": _best_checkpoint(trainer),
    }


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


def _print_summary(run_dir: Path, metrics: dict[str, Any], chance: float) -> None:
    """The end of a run on the terminal; ``chance`` is the accuracy of guessing (1 / classes)."""
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
        f"Precision:       {metrics.get('precision')} ({metrics.get('precision_reason')})",
        f"Time:            {breakdown_line(metrics['seconds_by_phase'])}",
        f"Metrics:         {run_dir / 'metrics.json'}",
        f"TensorBoard:     tensorboard --logdir {run_dir}",
    ]
    if val_acc is not None and val_acc <= chance + CHANCE_MARGIN * (1 - chance):
        lines.insert(1, f"Warning:         val/acc {val_acc:.4f} is chance level (guessing: {chance:.4f}): "
                        "the model learned nothing; train for more steps (trainer.max_epochs, "
                        "data.train_size) or lower optimizer.lr")
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
    with run_folder_locked(Path(output_dir)):
        return train(cfg)


def task(cfg: DictConfig, process_started: float | None = None) -> float | None:
    """Hydra task: train and return val accuracy (what hyper-parameter sweeps maximise)."""
    return train(cfg, process_started).get("val/acc")


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-train`` (and ``python train.py``)."""
    started_by_process = {os.getpid(): process_start_time()}

    def task_charging_start_up_once(cfg: DictConfig) -> float | None:
        # Only the first job in this process waited for it to start (imports, Hydra): not the later
        # jobs of a sweep, nor a job that a launcher runs in a process of its own.
        return task(cfg, started_by_process.pop(os.getpid(), None))

    return run_hydra(task_charging_start_up_once, config_name="train", config_dir=config_dir)
