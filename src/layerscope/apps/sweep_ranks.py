"""DDP inside a ``-m`` sweep: the ranks Lightning starts run their own job, not the whole sweep again."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

# Hydra's flags that choose where configs come from: the ranks must compose from the same place.
_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
# What Lightning's launcher sets in this process's environment for the ranks it starts.
_LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_command_line(argv: list[str], task_overrides: list[str], hydra_overrides: list[str]) -> list[str]:
    """``argv`` of a sweep, rewritten to run one of its jobs alone: that job's overrides, no ``-m``.

    Only the config flags and ``hydra.searchpath`` of the sweep's own settings carry over; the job's
    folder is added by Lightning (``hydra.run.dir``).
    """
    flags = []
    for i, arg in enumerate(argv[1:], start=1):
        if arg.split("=", 1)[0] in _CONFIG_FLAGS:
            flags.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                flags.append(argv[i + 1])
    searchpath = [o for o in hydra_overrides if o.lstrip("+").startswith("hydra.searchpath")]
    return [argv[0], *flags, *searchpath, *task_overrides, "hydra.mode=RUN"]


@contextmanager
def ranks_run_this_job_only(processes: int) -> Iterator[None]:
    """Let the ``processes`` DDP ranks of a sweep job train that job, in its folder, and then go.

    Lightning starts ranks 1.. by running ``sys.argv`` again with ``hydra.run.dir`` set to Hydra's
    run dir (``_hydra_subprocess_cmd`` in lightning/fabric/strategies/launchers/subprocess_script.py).
    In a sweep job ``sys.argv`` is the sweep, so each rank would launch every job again; and the run
    dir is not the job's folder. Here both point at this job for as long as it trains; after it, the
    process group and the launcher's variables go, so the next job of the sweep starts its ranks afresh.
    """
    if processes <= 1 or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra_cfg = HydraConfig.get()
    sweep_argv, run_dir = sys.argv, hydra_cfg.run.dir
    environment = {name: os.environ.get(name) for name in _LAUNCHER_VARIABLES}
    sys.argv = job_command_line(sys.argv, list(hydra_cfg.overrides.task), list(hydra_cfg.overrides.hydra))
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = sweep_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = run_dir
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
