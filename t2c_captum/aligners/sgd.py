"""The paper's public-code recipe, kept as a baseline: variance-scaled spaces, ``nn.Linear``, MSE, SGD."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._exceptions import DataError
from .base import Aligner

__all__ = ["SGDAligner"]


class SGDAligner(Aligner):
    """Linear aligner trained by SGD the way the Text-to-Concept code does.

    Both spaces are multiplied by one scalar each so their overall variance equals
    ``target_variance``; an ``nn.Linear(d, D)`` with bias is trained with MSE, SGD (momentum, weight
    decay) and a per-epoch cosine schedule that barely decays over a few epochs; the map is rescaled
    back afterwards. Rows in the held-out split are excluded from training.

    Args:
        lr (float, optional): Default: ``0.01``
        momentum (float, optional): Default: ``0.9``
        weight_decay (float, optional): Default: ``5e-4``
        batch_size (int, optional): Default: ``100``
        epochs (int, optional): Default: ``5``
        target_variance (float, optional): Default: ``4.5``
        schedule_epochs (int, optional): the cosine schedule's period in epochs. Default: ``200``
        seed (int, optional): Default: ``0``
        validation_fraction (float, optional): Default: ``0.1``
        device (str, optional): where training runs (``"cuda"``, as the paper's code trains); the
            fitted map is kept on the CPU either way. Default: CPU
    """

    kind = "sgd"

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        batch_size: int = 100,
        epochs: int = 5,
        target_variance: float = 4.5,
        schedule_epochs: int = 200,
        seed: int = 0,
        validation_fraction: float = 0.1,
        device: str | None = None,
    ) -> None:
        super().__init__(validation_fraction=validation_fraction)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.batch_size, self.epochs, self.seed = batch_size, epochs, seed
        self.target_variance, self.schedule_epochs = target_variance, schedule_epochs
        self.device = device
        self._X: list[torch.Tensor] = []
        self._Y: list[torch.Tensor] = []

    def get_params(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "target_variance": self.target_variance,
            "schedule_epochs": self.schedule_epochs,
            "seed": self.seed,
            "validation_fraction": self.validation_fraction,
            "device": self.device,
        }

    def _pending_dims(self) -> tuple[int, int] | None:
        return (self._X[0].shape[1], self._Y[0].shape[1]) if self._X else None

    def partial_fit(self, X: Any, Y: Any, indices: Any | None = None) -> SGDAligner:
        """Collect a batch of training rows (this recipe trains in memory, like the paper's code)."""
        X, Y, held = self._split(X, Y, indices)
        self._X.append(X[~held])
        self._Y.append(Y[~held])
        self._stale = True
        return self

    def _solve(self) -> None:
        if not self._X or sum(x.shape[0] for x in self._X) < 2:
            raise DataError("not enough training rows for the SGD aligner")
        dev = torch.device(self.device) if self.device else torch.device("cpu")
        X, Y = torch.cat(self._X).to(dev), torch.cat(self._Y).to(dev)
        sx = (self.target_variance / X.var().clamp_min(1e-12)).sqrt()
        sy = (self.target_variance / Y.var().clamp_min(1e-12)).sqrt()
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        linear = nn.Linear(X.shape[1], Y.shape[1]).to(dev)
        opt = torch.optim.SGD(
            linear.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.schedule_epochs)
        losses = []
        for _ in range(self.epochs):
            order = torch.randperm(X.shape[0], generator=gen).to(dev)
            total = torch.zeros((), device=dev)  # summed on the device: no sync per step
            for start in range(0, X.shape[0], self.batch_size):
                rows = order[start : start + self.batch_size]
                loss = nn.functional.mse_loss(linear(X[rows] * sx), Y[rows] * sy)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * rows.numel()
            sched.step()
            losses.append(float(total) / X.shape[0])
        with torch.no_grad():
            self.weight_ = (linear.weight * sx / sy).detach().cpu().clone()
            self.bias_ = (linear.bias / sy).detach().cpu().clone()
        self.x_mean_ = torch.zeros(X.shape[1])
        self.x_scale_ = torch.full((X.shape[1],), float(1 / sx))
        self.fit_stats_ = {"n_train": int(X.shape[0]), "epoch_losses": losses}
        self._stale = False
