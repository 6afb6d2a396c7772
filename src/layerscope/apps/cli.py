"""What every entry point shares: finding ``conf/``, checking overrides, reporting user errors."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from layerscope.apps.overrides import check_command_line
from layerscope.data.imagefolder import class_names
from layerscope.errors import UserError
from layerscope.files import RUN_LOCK, RUN_OWNER, write_atomically
from layerscope.training.checkpointing import TrainingInterrupted

EXIT_USER_ERROR = 2


def default_config_dir() -> Path:
    """The configs shipped inside the package (``layerscope/conf``), wherever it is installed.

    A folder found from this file, not Hydra's ``pkg://layerscope.conf``: pip unpacks wheels as plain
    files, so the same path serves an installed wheel, an editable install and the checkout, while
    ``pkg://`` would need an ``__init__.py`` in the config folder.
    """
    return Path(__file__).resolve().parents[1] / "conf"


def register_resolvers() -> None:
    """The resolvers the configs use.

    ``${imagefolder_classes:${data.root}}``: class count of a folder data set, at compose time.
    ``${model_name:${hydra.runtime.choices.model},${model}}``: the model in a run folder's name.
    ``${folder_name:${paths.output_dir}}``: the run folder's own name (MLflow's run name).
    """
    resolvers: dict[str, Callable[..., Any]] = {
        "imagefolder_classes": lambda root: len(class_names(root)),
        "model_name": model_name,
        "folder_name": lambda path: Path(path).name,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def model_name(choice: str, model: Any) -> str:
    """The model in a run folder's name: ``model.arch`` where the config has one, else the option's name.

    ``model=torchvision model.arch=resnet18`` gives resnet18, ``model=deep`` gives deep. Only letters,
    digits and ``._+-`` are kept (the rest become ``-``): a timm name such as ``hf-hub:timm/resnet18``
    must not open sub-folders.
    """
    name = choice
    if isinstance(model, DictConfig):
        name = OmegaConf.select(model, "arch", default=None, throw_on_missing=False) or choice
    return re.sub(r"[^\w.+-]", "-", str(name))


def check_output_folders(overrides: list[str]) -> None:
    """Create ``hydra.run.dir`` / ``hydra.sweep.dir`` given on the command line, or say in one line why not.

    (Hydra would otherwise fail on them with a traceback.)
    """
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key in ("hydra.run.dir", "hydra.sweep.dir") and "${" not in value:
            try:
                Path(value).expanduser().mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(
                    f"{key}={value} cannot be created ({err.strerror or err}): choose a writable folder"
                ) from err


def user_error_message(err: BaseException) -> str | None:
    """The one-line message for an error the user caused, or None for a bug.

    Hydra wraps errors raised while instantiating, so the whole chain of causes is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError):
            return str(current)
        if isinstance(current, MissingMandatoryValue):
            key = current.full_key or "a required value"
            return f"{key} is not set: pass {key}=... on the command line"
        current = current.__cause__ or current.__context__
    return None


def note(message: str) -> None:
    """One line on stderr about something the user should know that stops nothing."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def discard_unfinished_run(run_dir: Path) -> None:
    """Remove a run folder that a user error stopped before it held any result.

    Only a folder holding nothing but what Hydra itself wrote (``.hydra/`` and log files) and the
    run's lock (``RUN_LOCK``, ``RUN_OWNER``: ``run_lock.py``), and never the working directory:
    nothing of the user's is ever deleted.
    """
    if not run_dir.is_dir() or run_dir.resolve() == Path.cwd().resolve():
        return
    if all(p.name in (".hydra", RUN_LOCK, RUN_OWNER) or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def continue_command(checkpoint: Path) -> str:
    """The command line that continues an interrupted run from ``checkpoint``."""
    hydra_cfg = HydraConfig.get()
    program = Path(sys.argv[0]).name
    program = f"python {program}" if program.endswith(".py") else program
    replaced = ("resume", "ckpt_path")
    kept = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") not in replaced]
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a sweep job: continue it as a run of its own
        extra = [f"ckpt_path={checkpoint}"]
    else:
        extra = [f"hydra.run.dir={hydra_cfg.runtime.output_dir}", "resume=auto"]
    return " ".join([program, *(shlex.quote(o) for o in [*kept, *extra])])


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that ``path`` is never half a file."""
    write_atomically(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def run_hydra(
    task: Callable[[DictConfig], Any], config_name: str, config_dir: Path | None = None
) -> Any:
    """Run ``task`` as a Hydra app; a UserError anywhere ends in one line and exit code 2."""
    config_dir = config_dir or default_config_dir()
    if not config_dir.is_dir():
        fail(f"no configs at {config_dir}: reinstall layerscope (pip install layerscope)")
    register_resolvers()
    try:
        check_command_line(config_dir, config_name, sys.argv[1:])
        check_output_folders(sys.argv[1:])
    except UserError as err:
        fail(str(err))

    def guarded(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except TrainingInterrupted as err:
            if rank_zero_only.rank == 0:  # every DDP rank stops; one says so
                how = f"; continue with:\n  {continue_command(err.checkpoint)}" if err.checkpoint else ""
                print(f"\n{err}{how}", file=sys.stderr, flush=True)
            sys.exit(128 + err.signum)
        except KeyboardInterrupt:  # Ctrl-C outside the training loop: nothing there to save
            print("\ninterrupted", file=sys.stderr, flush=True)
            sys.exit(128 + signal.SIGINT)
        except Exception as err:
            message = user_error_message(err)
            if message is None:
                raise
            if rank_zero_only.rank != 0:  # under DDP every rank stops with it; rank zero says why
                sys.exit(EXIT_USER_ERROR)
            discard_unfinished_run(Path(HydraConfig.get().runtime.output_dir))
            fail(message)

    main = hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
    return main(guarded)()
