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
    min_warmup_steps: int = 0,
) -> LRScheduler:
    """Smith & Topin's one-cycle policy ("Super-Convergence", 2017), peaking at the optimizer's lr.

    The peak is safe only after a warm-up of some length: the network must first leave the region
    of its initial weights, where large steps make the loss spike and can leave it at chance (a
    2-epoch run of 32 steps, warming up in 8, did exactly that at lr 0.2). A warm-up (``pct_start``
    of the run) shorter than ``min_warmup_steps`` therefore climbs only its share of the way from the
    start lr to the peak: 8 of 40 steps, a fifth. Longer runs get the plain policy.
    """
    # OneCycleLR divides by the length of its warm-up phase, which must be at least one step;
    # a very short run then simply ends before the schedule has fully annealed.
    total_steps = max(total_steps, math.ceil(2 / pct_start) + 1)
    start_lrs = [group["lr"] / div_factor for group in optimizer.param_groups]
    climbed = min(1.0, pct_start * total_steps / min_warmup_steps) if min_warmup_steps > 0 else 1.0
    # The peak reached, as a multiple of the start lr; the start and the final lr stay as configured.
    peak_ratio = 1.0 + (div_factor - 1.0) * climbed
    return OneCycleLR(
        optimizer,
        max_lr=[lr * peak_ratio for lr in start_lrs],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=peak_ratio,
        final_div_factor=final_div_factor,
        cycle_momentum=cycle_momentum,
    )


def cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, min_lr: float = 0.0
) -> LRScheduler:
    """Cosine decay from the optimizer's lr to ``min_lr`` (Loshchilov & Hutter, SGDR, 2017)."""
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=min_lr)
