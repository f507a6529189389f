"""The settings of one training run: sizes, steps, optimiser settings and model hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainSettings:
    """Sizes, steps and optimiser settings of one training run."""

    seed: int = 0
    n_train: int = 20000
    n_val: int = 2000
    n_test: int = 2000
    n_compositional: int = 1000
    batch_size: int = 128
    clip_steps: int = 1800
    clip_lr: float = 2e-3
    group_fraction: float = 0.625
    # hard-negative groups share these factors; none holds shape or pattern fixed, so both must be
    # told apart inside every group (a factor held fixed in a group goes unlearned; see the history
    # in docs/world-calibration.md)
    clip_groupings: list = field(
        default_factory=lambda: [["colour", "background"], ["colour", "size", "position"],
                                 ["background", "size", "count"]]
    )
    clip_grouping_weights: list | None = None
    partial_per_image: int = 1
    partial_single: float = 0.5
    # pattern-only partial captions drawn 6x as often as other single-factor ones
    partial_single_weights: dict | None = field(default_factory=lambda: {"pattern": 6.0})
    cnn_steps: int = 300
    cnn_lr: float = 3e-3
    ae_steps: int = 700
    ae_lr: float = 2e-3
    ae_saturation_gain: float = 20.0
    vit_steps: int = 900
    vit_lr: float = 1e-3
    # the shape head's loss counts 3x: the other factors are learnt first and would dominate
    vit_shape_weight: float = 3.0
    weight_decay: float = 0.05
    warmup: int = 100
    max_shift: int = 3
    threads: int = 2
    log_every: int = 100
    clip_hparams: dict = field(
        default_factory=lambda: {
            "embed_dim": 128, "image_widths": [32, 48, 96, 160], "image_extra": [3],
            "text_width": 128, "text_layers": 2, "text_heads": 4, "context_length": 32,
        }
    )
    cnn_hparams: dict = field(
        default_factory=lambda: {"widths": [32, 64, 128, 128], "extra": [], "feature_dim": 128}
    )
    ae_hparams: dict = field(
        default_factory=lambda: {"latent_dim": 128, "widths": [24, 48, 96, 128], "pooled_dim": 64}
    )
    vit_hparams: dict = field(
        default_factory=lambda: {"patch": 8, "width": 96, "depth": 4, "heads_per_block": 4,
                                 "stem": [32, 64, 96]}
    )

    @classmethod
    def quick(cls) -> TrainSettings:
        """Tiny settings for smoke tests (seconds)."""
        return cls(
            n_train=256, n_val=96, n_test=96, n_compositional=48, batch_size=32,
            clip_steps=3, cnn_steps=3, ae_steps=3, vit_steps=3, warmup=1, log_every=1,
        )
