"""Learning-rate schedules that take the run's total number of optimizer steps.

The LightningModule calls each with ``(optimizer, total_steps=...)`` once the trainer knows how
many steps the run has, so configs never have to compute it.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR


def one_cycle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1000.0,
    cycle_momentum: bool = False,
) -> LRScheduler:
    """Smith & Topin's one-cycle policy ("Super-Convergence", 2017), peaking at the optimizer's lr."""
    # OneCycleLR divides by the length of its warm-up phase, which must be at least one step;
    # a very short run then simply ends before the schedule has fully annealed.
    total_steps = max(total_steps, math.ceil(2 / pct_start) + 1)
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=cycle_momentum,
    )


def cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, min_lr: float = 0.0
) -> LRScheduler:
    """Cosine decay from the optimizer's lr to ``min_lr`` (Loshchilov & Hutter, SGDR, 2017)."""
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=min_lr)
