"""Train the world's tiny CLIP, ShapeCNN and AutoEncoder, save them and write their calibration.

Usage::

    python -m t2c_captum.world.train [--quick] [--out DIR] [--calibration FILE]

The full run takes about 10-15 minutes on 2 CPU cores; ``--quick`` takes seconds (smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from t2c_captum.world.generator import FACTORS, Sample, make_split, render
from t2c_captum.world.models import (
    WORLD_MEAN,
    WORLD_STD,
    AutoEncoder,
    ShapeCNN,
    TinyCLIP,
    clip_tokenize,
)
from t2c_captum.world.weights import DEFAULT_WEIGHTS_DIR, REGENERATE_COMMAND
from t2c_captum.world.zeroshot import class_prompts, zero_shot_weights

__all__ = ["TrainSettings", "main", "train_world"]

CALIBRATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "world-calibration.md"
PROBE_FACTORS = tuple(FACTORS)


@dataclass
class TrainSettings:
    """Sizes, steps and optimiser settings of one training run."""

    seed: int = 0
    n_train: int = 20000
    n_val: int = 2000
    n_test: int = 2000
    n_compositional: int = 1000
    batch_size: int = 128
    clip_steps: int = 2100
    clip_lr: float = 2e-3
    group_fraction: float = 0.625
    cnn_steps: int = 300
    cnn_lr: float = 3e-3
    ae_steps: int = 700
    ae_lr: float = 2e-3
    ae_saturation_gain: float = 20.0
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

    @classmethod
    def quick(cls) -> TrainSettings:
        """Tiny settings for smoke tests (seconds)."""
        return cls(
            n_train=256, n_val=96, n_test=96, n_compositional=48, batch_size=32,
            clip_steps=3, cnn_steps=3, ae_steps=3, warmup=1, log_every=1,
        )


# --------------------------------------------------------------------------- data


def render_array(samples: list[Sample]) -> Tensor:
    """Rendered samples as a uint8 tensor ``[N, 3, 64, 64]``."""
    pixels = np.stack([np.asarray(render(s)) for s in samples])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def normalise(images: Tensor) -> Tensor:
    """uint8 ``[N,3,H,W]`` -> float, normalised like ``world_transform``."""
    mean = torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(WORLD_STD).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def random_shift(images: Tensor, max_shift: int, gen: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge pixels replicated)."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, [max_shift] * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, 3, h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, 3, h, w)
    return out.gather(3, cols)


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled index batches."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]


def hard_negative_batches(
    groupings: list[np.ndarray], batch_size: int, gen: torch.Generator, fraction: float = 0.5
) -> Iterator[Tensor]:
    """Endless batches: ``fraction`` from one group of a random grouping, the rest random.

    Images in one group share e.g. colour and background, so telling their captions apart
    needs the remaining factors (shape, pattern): contrastive training cannot ignore them.
    """
    n = len(groupings[0])
    members = [
        [torch.from_numpy(np.flatnonzero(keys == g)) for g in np.unique(keys)] for keys in groupings
    ]
    half = int(batch_size * fraction)
    while True:
        groups = members[int(torch.randint(len(members), (1,), generator=gen))]
        group = groups[int(torch.randint(len(groups), (1,), generator=gen))]
        chosen = group[torch.randperm(len(group), generator=gen)[:half]]
        rest = torch.randint(0, n, (batch_size - len(chosen),), generator=gen)
        yield torch.unique(torch.cat([chosen, rest]))


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


# --------------------------------------------------------------------------- models


def caption_vocabulary(samples: list[Sample]) -> tuple[Tensor, Tensor]:
    """Token ids of all captions ``[N, k, L]`` and the sorted BPE ids the tiny CLIP will know."""
    k = len(samples[0].captions)
    ids = clip_tokenize([c for s in samples for c in s.captions]).view(len(samples), k, -1)
    prompts = [p for f in FACTORS for ps in class_prompts(f).values() for p in ps]
    vocab = torch.cat([ids.flatten(), clip_tokenize(prompts).flatten()]).unique(sorted=True)
    return ids, vocab


def factor_keys(samples: list[Sample], factors: tuple[str, ...]) -> np.ndarray:
    """One integer group id per sample for the combination of ``factors``."""
    combos = [tuple(s.value(f) for f in factors) for s in samples]
    index = {c: i for i, c in enumerate(sorted(set(combos)))}
    return np.array([index[c] for c in combos])


def train_clip(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> TinyCLIP:
    """Contrastive training on (image, random caption) pairs."""
    tokens, vocab = caption_vocabulary(samples)
    model = TinyCLIP(vocab, **cfg.clip_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    def loss_fn(idx: Tensor) -> Tensor:
        pick = torch.randint(0, tokens.shape[1], (len(idx),), generator=gen)
        ids = tokens[idx, pick]
        ids = ids[:, : int((ids != 0).sum(1).max())]
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        logits = model(x, ids)
        target = torch.arange(len(idx))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

    groupings = [factor_keys(samples, ("colour", "background")),
                 factor_keys(samples, ("colour", "size", "position")),
                 factor_keys(samples, ("pattern", "background"))]
    batch = min(cfg.batch_size, len(samples))
    sampler = hard_negative_batches(groupings, batch, gen, cfg.group_fraction)
    run_steps(model, loss_fn, len(samples), cfg.clip_steps, cfg.clip_lr, cfg, "clip", sampler)
    return model


def train_cnn(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> ShapeCNN:
    """Supervised training on the ``shape`` factor only."""
    labels = torch.tensor([FACTORS["shape"].index(s.shape) for s in samples])
    model = ShapeCNN(num_classes=len(FACTORS["shape"]), **cfg.cnn_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 2)

    def loss_fn(idx: Tensor) -> Tensor:
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        return F.cross_entropy(model(x), labels[idx])

    run_steps(model, loss_fn, len(samples), cfg.cnn_steps, cfg.cnn_lr, cfg, "cnn")
    return model


def saturation_weights(x: Tensor, gain: float) -> Tensor:
    """Per-pixel weights ``1 + gain * chroma`` of normalised images (label-free)."""
    rgb = x * torch.tensor(WORLD_STD).view(1, 3, 1, 1) + torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    chroma = rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)
    return 1.0 + gain * chroma


def train_ae(images: Tensor, cfg: TrainSettings) -> AutoEncoder:
    """Reconstruction-only training (no labels).

    The squared error is weighted up on saturated pixels: the backgrounds are grey, so this
    keeps the small coloured objects (and their colour) from drowning in background texture.
    """
    model = AutoEncoder(**cfg.ae_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 3)

    def loss_fn(idx: Tensor) -> Tensor:
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        weights = saturation_weights(x, cfg.ae_saturation_gain)
        return (weights * (model(x) - x) ** 2).mean()

    run_steps(model, loss_fn, len(images), cfg.ae_steps, cfg.ae_lr, cfg, "ae")
    return model


# --------------------------------------------------------------------------- calibration


@torch.no_grad()
def embed(fn: Callable[[Tensor], Tensor], images: Tensor, batch: int = 500) -> Tensor:
    """Apply ``fn`` to normalised uint8 images in batches."""
    return torch.cat([fn(normalise(images[i : i + batch])).float()
                      for i in range(0, len(images), batch)])


def labels_of(samples: list[Sample], factor: str) -> np.ndarray:
    """Class indices of ``factor`` for each sample."""
    return np.array([FACTORS[factor].index(s.value(factor)) for s in samples])


def zero_shot_accuracy(model: TinyCLIP, image_emb: Tensor, samples: list[Sample]) -> dict:
    """Top-1 zero-shot accuracy per factor."""
    img = F.normalize(image_emb, dim=-1)
    out = {}
    for factor in FACTORS:
        pred = (img @ zero_shot_weights(model, factor).t()).argmax(1).numpy()
        out[factor] = float((pred == labels_of(samples, factor)).mean())
    return out


def probe_accuracy(train_x: Tensor, train_s: list, test_x: Tensor, test_s: list) -> dict:
    """Linear-probe (logistic regression) accuracy per factor."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.numpy())
    a, b = scaler.transform(train_x.numpy()), scaler.transform(test_x.numpy())
    out = {}
    for factor in PROBE_FACTORS:
        y_train = labels_of(train_s, factor)
        if len(np.unique(y_train)) < 2:
            out[factor] = float("nan")
            continue
        clf = LogisticRegression(max_iter=500, C=1.0).fit(a, y_train)
        out[factor] = float((clf.predict(b) == labels_of(test_s, factor)).mean())
    return out


def calibrate(models: dict[str, Any], data: dict[str, tuple[Tensor, list]]) -> dict:
    """All calibration figures: CLIP zero-shot, ShapeCNN head, linear probes."""
    clip, cnn, ae = models["world-clip"], models["world-cnn"], models["world-ae"]
    cal: dict = {"world-clip": {}, "world-cnn": {}, "world-ae": {}}
    for split in ("test", "compositional"):
        images, samples = data[split]
        emb = embed(clip.encode_image, images)
        cal["world-clip"][f"zero_shot_{split}"] = zero_shot_accuracy(clip, emb, samples)
        pred = embed(cnn, images).argmax(1).numpy()
        cal["world-cnn"][f"head_shape_{split}"] = float(
            (pred == labels_of(samples, "shape")).mean()
        )
    feature_fns = {"world-clip": clip.encode_image, "world-cnn": cnn.features,
                   "world-ae": ae.features}
    (val_x, val_s), (test_x, test_s) = data["val"], data["test"]
    for name, fn in feature_fns.items():
        cal[name]["probe_test"] = probe_accuracy(embed(fn, val_x), val_s, embed(fn, test_x), test_s)
    return cal


# --------------------------------------------------------------------------- saving


def save_model(model: nn.Module, name: str, out_dir: Path, meta: dict) -> None:
    """Write ``<name>.safetensors`` (float tensors as fp16) and ``<name>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(out_dir / f"{name}.safetensors"), metadata={"name": name})
    config = {"name": name, "class": type(model).__name__, "hparams": model.hparams, **meta}
    (out_dir / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n")


def calibration_markdown(cal: dict, command: str, seconds: float, cfg: TrainSettings) -> str:
    """Human-readable calibration tables."""
    factors = list(FACTORS)
    lines = [
        "# Concept-world calibration", "",
        f"Produced by `{command}` (seed {cfg.seed}, {seconds / 60:.1f} min wall time on "
        f"{cfg.threads} CPU threads; train {cfg.n_train}, val {cfg.n_val}, test {cfg.n_test}, "
        f"compositional {cfg.n_compositional} images).", "",
        "## Tiny CLIP zero-shot top-1 (prompts: `FACTOR_TEMPLATES`)", "",
        "| split | " + " | ".join(factors) + " |",
        "|---" * (len(factors) + 1) + "|",
    ]
    for split in ("test", "compositional"):
        row = cal["world-clip"][f"zero_shot_{split}"]
        lines.append(f"| {split} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
    lines += [
        "", "## ShapeCNN own head (shape)", "",
        f"test {cal['world-cnn']['head_shape_test']:.3f}, "
        f"compositional {cal['world-cnn']['head_shape_compositional']:.3f}", "",
        "## Linear probes (logistic regression fitted on val, evaluated on test)", "",
        "| model | " + " | ".join(factors) + " |",
        "|---" * (len(factors) + 1) + "|",
    ]
    for name in ("world-clip", "world-cnn", "world-ae"):
        row = cal[name]["probe_test"]
        lines.append(f"| {name} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- entry points


def train_world(
    out_dir: Path | str | None = None,
    settings: TrainSettings | None = None,
    calibration_path: Path | str | None = None,
    command: str = REGENERATE_COMMAND,
) -> dict:
    """Train all world models, save them into ``out_dir`` and return the calibration.

    Args:
        out_dir: where weights and configs go (default: the package's ``world/weights``).
        settings: training settings (default: the full run).
        calibration_path: where to write the markdown calibration (None: don't write).
        command: command line recorded in the configs and the calibration document.

    Returns:
        The calibration dict (also stored in every model's JSON config).
    """
    cfg = settings or TrainSettings()
    out = Path(out_dir) if out_dir is not None else DEFAULT_WEIGHTS_DIR
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    start = time.time()
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test,
             "compositional": cfg.n_compositional}
    data = {}
    for split, n in sizes.items():
        samples = make_split(split, n)
        data[split] = (render_array(samples), samples)
    print(f"rendered {sum(sizes.values())} images ({time.time() - start:.0f}s)", flush=True)
    train_x, train_s = data["train"]
    models: dict[str, nn.Module] = {
        "world-clip": train_clip(train_x, train_s, cfg),
        "world-cnn": train_cnn(train_x, train_s, cfg),
        "world-ae": train_ae(train_x, cfg),
    }
    cal = calibrate(models, data)
    seconds = time.time() - start
    meta = {"command": command, "seed": cfg.seed, "training": asdict(cfg),
            "wall_time_s": round(seconds, 1), "calibration": cal}
    for name, model in models.items():
        save_model(model, name, out, meta)
    text = calibration_markdown(cal, command, seconds, cfg)
    print(text, flush=True)
    if calibration_path is not None:
        Path(calibration_path).parent.mkdir(parents=True, exist_ok=True)
        Path(calibration_path).write_text(text)
    return cal


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images")
    parser.add_argument("--out", type=Path, default=None, help="output folder for weights")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="markdown calibration file (default: docs/world-calibration.md "
                             "for the full run into the default folder)")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        import tempfile

        args.out = Path(tempfile.mkdtemp(prefix="t2c-world-"))
    calibration = args.calibration
    if calibration is None and not args.quick and args.out is None:
        calibration = CALIBRATION_DOC
    command = "python -m t2c_captum.world.train" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
    ).rstrip()
    settings = TrainSettings.quick() if args.quick else TrainSettings()
    train_world(args.out, settings, calibration, command)
    print(f"weights written to {args.out or DEFAULT_WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
