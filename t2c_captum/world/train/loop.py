"""The optimisation loop every model is trained with: AdamW under a warm-up + cosine learning rate."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from .data import batches
from .settings import TrainSettings


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def run_steps(
    model: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    n: int,
    steps: int,
    lr: float,
    cfg: TrainSettings,
    name: str,
    sampler: Iterator[Tensor] | None = None,
) -> float:
    """Optimise ``loss_fn(batch_indices)`` with AdamW + cosine LR; returns the last loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = sampler or batches(n, min(cfg.batch_size, n), gen)
    model.train()
    start, loss_value = time.time(), float("nan")
    for step, idx in zip(range(steps), sampler, strict=False):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, cfg.warmup)
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
        if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
            print(f"  {name} step {step + 1}/{steps} loss {loss_value:.4f} "
                  f"({time.time() - start:.0f}s)", flush=True)
    model.eval()
    return loss_value
