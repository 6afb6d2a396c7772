"""The command line that the DDP ranks of one sweep job run: that job alone."""

from __future__ import annotations

from layerscope.apps.sweep_ranks import job_command_line


def test_a_job_command_line_keeps_the_config_source_and_drops_the_sweep() -> None:
    sweep = ["train.py", "-m", "--config-dir", "mine", "-cn=train", "trainer=ddp", "seed=1,2"]
    hydra_overrides = ["hydra.sweep.dir=runs", "hydra.searchpath=[file://extra]", "hydra/launcher=basic"]
    command = job_command_line(sweep, ["trainer=ddp", "seed=2"], hydra_overrides)
    assert command == ["train.py", "--config-dir", "mine", "-cn=train", "hydra.searchpath=[file://extra]",
                       "trainer=ddp", "seed=2", "hydra.mode=RUN"]
