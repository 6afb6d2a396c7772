"""The one-cycle schedule as conf/ configures it: a short run warms up gently, a long one as Smith's."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.optim.lr_scheduler import OneCycleLR

from layerscope.apps.cli import register_resolvers
from tests.conftest import CONF


def _learning_rates(scheduler_factory: object, total_steps: int, lr: float = 0.2) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    scheduler = scheduler_factory(optimizer, total_steps=total_steps)  # type: ignore[operator]
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _configured_one_cycle() -> object:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["scheduler=onecycle", "optimizer=sgd"])
    assert cfg.optimizer.lr == 0.2
    return instantiate(cfg.scheduler)


def test_a_32_step_run_climbs_only_its_share_of_the_warm_up() -> None:
    """2 epochs of 16 steps warmed up to lr 0.2 in 8 steps, and the loss spiked and stayed at chance."""
    rates = _learning_rates(_configured_one_cycle(), total_steps=32)
    start = 0.2 / 25
    assert rates[0] == pytest.approx(start)
    # 8 warm-up steps of the 40 the configured minimum asks for: a fifth of the climb to 0.2.
    assert max(rates) == pytest.approx(start + (0.2 - start) * 8 / 40, rel=1e-6)
    assert max(rates) < 0.05 and rates[-1] < start


def test_a_long_run_gets_the_plain_one_cycle_policy() -> None:
    rates = _learning_rates(_configured_one_cycle(), total_steps=1000)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    plain = OneCycleLR(optimizer, max_lr=0.2, total_steps=1000, pct_start=0.25, div_factor=25.0,
                       final_div_factor=1000.0, cycle_momentum=False)
    expected = []
    for _ in range(1000):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        plain.step()
    assert rates == pytest.approx(expected) and max(rates) == pytest.approx(0.2)
