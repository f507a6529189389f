"""Train the world's tiny CLIP, ShapeCNN, AutoEncoder and ViT, save them and write their calibration.

Usage::

    python -m t2c_captum.world.train [--quick] [--vit-only] [--out DIR] [--calibration FILE]

The full run takes about 22 minutes on 2 CPU cores; ``--quick`` takes seconds (smoke test).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from t2c_captum._exceptions import WorldError
from t2c_captum.world.generator import (
    CANONICAL_COUNTS,
    FACTORS,
    GENERIC_NOUNS,
    SYNONYMS,
    Sample,
    make_split,
    render,
)
from t2c_captum.world.models import (
    WORLD_MEAN,
    WORLD_STD,
    AutoEncoder,
    ShapeCNN,
    TinyCLIP,
    WorldViT,
    clip_special_ids,
    clip_tokenize,
)
from t2c_captum.world.weights import DEFAULT_WEIGHTS_DIR, REGENERATE_COMMAND, load_world_model
from t2c_captum.world.zeroshot import class_prompts, zero_shot_weights

__all__ = ["TrainSettings", "main", "train_world"]

CALIBRATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "world-calibration.md"
PROBE_FACTORS = tuple(FACTORS)
#: the models trained in one random stream (CLIP, then CNN, then AE); world-vit has its own seed
CHAINED = ("world-clip", "world-cnn", "world-ae")


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
    groupings: list[np.ndarray],
    batch_size: int,
    gen: torch.Generator,
    fraction: float = 0.5,
    weights: Sequence[float] | None = None,
) -> Iterator[Tensor]:
    """Endless batches: ``fraction`` from one group of a random grouping, the rest random.

    Images in one group share e.g. colour and background, so telling their captions apart
    needs the remaining factors (shape, pattern): contrastive training cannot ignore them.
    ``weights`` are the groupings' relative probabilities (default: uniform).
    """
    n = len(groupings[0])
    members = [
        [torch.from_numpy(np.flatnonzero(keys == g)) for g in np.unique(keys)] for keys in groupings
    ]
    probs = None if weights is None else torch.tensor(weights, dtype=torch.float)
    half = int(batch_size * fraction)
    while True:
        if probs is None:
            groups = members[int(torch.randint(len(members), (1,), generator=gen))]
        else:
            groups = members[int(torch.multinomial(probs, 1, generator=gen))]
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


# --------------------------------------------------------------------------- training captions

#: Words that open a partial caption ("" = none); deliberately not the zero-shot templates' words.
PARTIAL_LEADS = ("", "", "a picture of", "a drawing of", "an illustration of", "a scene with")
#: Words that attach a background to a partial caption.
PARTIAL_BG_LINKS = ("on", "against", "over", "in front of")
#: Factor -> weight of captions naming only that factor.
PARTIAL_SINGLE_WEIGHTS = {"shape": 6.0, "colour": 1.0, "pattern": 2.0, "size": 0.5,
                          "background": 1.0, "position": 0.5, "count": 0.5}
#: Factor -> probability that a multi-factor partial caption names it.
PARTIAL_INCLUDE = {"shape": 0.8, "colour": 0.5, "pattern": 0.6, "size": 0.3,
                   "background": 0.4, "position": 0.3, "count": 0.3}


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in tuple("aeiou") else "a ") + phrase


def _value_phrases(factor: str, value: str) -> list[str]:
    """All phrases a generator caption may use for ``value`` (longest first)."""
    options = SYNONYMS[factor][value]
    flat = [w for pair in options for w in pair] if factor == "shape" else list(options)
    if factor == "count" and value == "one":
        flat.append("an")
    return sorted(flat, key=len, reverse=True)


def factor_values(samples: list[Sample]) -> np.ndarray:
    """Class index of every factor (``FACTORS`` order) per sample, ``[N, n_factors]``."""
    return np.stack([labels_of(samples, f) for f in FACTORS], axis=1)


def caption_mentions(sample: Sample, caption: str) -> np.ndarray:
    """Class index per factor that ``caption`` names (-1 where it leaves the factor open).

    Background and position phrases are found (and removed) first, so that a 'striped
    background' does not count as a striped object.
    """
    text = " " + " ".join(caption.lower().replace(",", " ").split()) + " "
    out = np.full(len(FACTORS), -1, dtype=np.int64)
    order = ("background", "position", "shape", "colour", "pattern", "size", "count")
    for factor in order:
        value = sample.value(factor)
        for phrase in _value_phrases(factor, value):
            if f" {phrase} " in text:
                out[list(FACTORS).index(factor)] = FACTORS[factor].index(value)
                if factor in ("background", "position"):
                    text = text.replace(f" {phrase} ", " ")
                break
    return out


class PartialCaptions:
    """Training-only captions that name a random subset of an image's factors.

    Words come from the generator's ``SYNONYMS``; token ids are assembled from cached per-word
    BPE ids (CLIP's BPE never merges across spaces), so no tokenizer call is needed per step.

    Args:
        context_length: tokens per caption (longer ones are truncated, end token kept).
        single: probability that a caption names exactly one factor.
        seed: seed of the word choices.
    """

    N_UNIFORMS = 24

    def __init__(
        self,
        context_length: int = 32,
        single: float = 0.5,
        seed: int = 0,
        single_weights: dict | None = None,
    ) -> None:
        self.context_length = context_length
        self.single = single
        self.rng = np.random.default_rng(seed)
        self.sot, self.eot = clip_special_ids()
        self.names = list(FACTORS)
        table = {**PARTIAL_SINGLE_WEIGHTS, **(single_weights or {})}
        weights = np.array([table[f] for f in self.names])
        self.single_cdf = np.cumsum(weights / weights.sum()).tolist()
        self.include_p = np.array([PARTIAL_INCLUDE[f] for f in self.names])
        self._word_ids: dict[str, list[int]] = {}

    def text(self, values: Sequence[int], u: Sequence[float] | None = None) -> tuple[str, list]:
        """One caption for class indices ``values`` and the class index per factor it names.

        ``u`` holds the caption's uniform random numbers (``N_UNIFORMS`` of them; drawn if None).
        """
        if u is None:
            u = self.rng.random(self.N_UNIFORMS).tolist()
        draws = iter(u[len(self.names) + 2 :])

        def pick(options: tuple) -> Any:
            return options[min(int(next(draws) * len(options)), len(options) - 1)]

        names = self.names
        if u[0] < self.single:
            index = min(bisect.bisect_right(self.single_cdf, u[1]), len(names) - 1)
            chosen = {names[index]}
        else:
            chosen = {f for f, p, r in zip(names, self.include_p, u[2:], strict=False) if r < p}
            chosen = chosen or {"shape"}
        value = {f: FACTORS[f][values[i]] for i, f in enumerate(names)}
        n = list(CANONICAL_COUNTS.values()).index(value["count"]) + 1
        plural = n > 1 if "count" in chosen else True
        adjectives = [str(pick(SYNONYMS[f][value[f]]))
                      for f in ("size", "colour", "pattern") if f in chosen]
        if len(adjectives) > 1 and next(draws) < 0.5:
            adjectives.reverse()
        if "shape" in chosen:
            noun: str | None = pick(SYNONYMS["shape"][value["shape"]])[int(plural)]
        elif adjectives or "count" in chosen:
            noun = pick(GENERIC_NOUNS)[int(plural)]
        else:
            noun = None
        phrase = " ".join([*adjectives, noun]) if noun else "something"
        if "count" in chosen:
            word = str(pick(SYNONYMS["count"][value["count"]]))
            phrase = _article(phrase) if word == "a" else f"{word} {phrase}"
        elif noun and next(draws) < 0.5:
            phrase = "some " + phrase
        parts = [phrase]
        if "position" in chosen:
            parts.append(str(pick(SYNONYMS["position"][value["position"]])))
        if "background" in chosen:
            bg = _article(str(pick(SYNONYMS["background"][value["background"]])))
            if noun is None and len(parts) == 1 and next(draws) < 0.4:
                parts = [bg]
            else:
                parts += [pick(PARTIAL_BG_LINKS), bg]
        text = " ".join([str(pick(PARTIAL_LEADS)), *parts]).strip()
        mentions = [values[i] if f in chosen else -1 for i, f in enumerate(names)]
        return text, mentions

    def _ids(self, text: str) -> list[int]:
        from t2c_captum.world.models import _tokenizer

        out = [self.sot]
        for word in text.split():
            if word not in self._word_ids:
                self._word_ids[word] = list(_tokenizer().encode(word))
            out += self._word_ids[word]
        return out[: self.context_length - 1] + [self.eot]

    def batch(self, values: np.ndarray) -> tuple[Tensor, Tensor]:
        """Token ids ``[B, L]`` (0-padded) and named class indices ``[B, n_factors]``."""
        uniforms = self.rng.random((len(values), self.N_UNIFORMS)).tolist()
        texts, mentions = zip(*map(self.text, values.tolist(), uniforms), strict=True)
        return self._pad([self._ids(t) for t in texts]), torch.tensor(mentions)

    @staticmethod
    def _pad(rows: list[list[int]]) -> Tensor:
        ids = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return torch.from_numpy(ids)

    @staticmethod
    def vocabulary_words() -> list[str]:
        """Every word a partial caption can use (to build the text tower's vocabulary)."""
        words = [*PARTIAL_LEADS, *PARTIAL_BG_LINKS, "some something", "a an"]
        words += [" ".join(pair) for pair in GENERIC_NOUNS]
        for factor, table in SYNONYMS.items():
            for options in table.values():
                flat = [w for pair in options for w in pair] if factor == "shape" else options
                words += [str(w) for w in flat]
        return [w for w in words if w]


def multi_positive_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """Symmetric contrastive loss whose targets are uniform over each row's/column's positives.

    Args:
        logits: image-to-text logits ``[B, T]``.
        positives: bool ``[B, T]``, True where the text describes the image (every image has
            one; texts without any image in the batch only act as negatives).
    """
    pos = positives.float()
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    has = pos.sum(0) > 0
    cols = pos[:, has]
    t2i = -(cols / cols.sum(0, keepdim=True) * F.log_softmax(logits[:, has], dim=0)).sum(0).mean()
    return (i2t + t2i) / 2


# --------------------------------------------------------------------------- models


def caption_vocabulary(samples: list[Sample]) -> tuple[Tensor, Tensor]:
    """Token ids of all captions ``[N, k, L]`` and the sorted BPE ids the tiny CLIP will know."""
    k = len(samples[0].captions)
    ids = clip_tokenize([c for s in samples for c in s.captions]).view(len(samples), k, -1)
    prompts = [p for f in FACTORS for ps in class_prompts(f).values() for p in ps]
    prompts += PartialCaptions.vocabulary_words()
    vocab = torch.cat([ids.flatten(), clip_tokenize(prompts).flatten()]).unique(sorted=True)
    return ids, vocab


def factor_keys(samples: list[Sample], factors: tuple[str, ...]) -> np.ndarray:
    """One integer group id per sample for the combination of ``factors``."""
    combos = [tuple(s.value(f) for f in factors) for s in samples]
    index = {c: i for i, c in enumerate(sorted(set(combos)))}
    return np.array([index[c] for c in combos])


def train_clip(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> TinyCLIP:
    """Contrastive training on (image, caption) pairs with caption-aware positives.

    Every image brings one of its captions and ``cfg.partial_per_image`` partial captions that
    name only some factors. A caption is a positive of every batch image that has all the factor
    values it names, so e.g. 'a striped disc' pulls all striped circles of the batch, and no
    image is pushed away from a caption that describes it.
    """
    tokens, vocab = caption_vocabulary(samples)
    model = TinyCLIP(vocab, **cfg.clip_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    values = torch.from_numpy(factor_values(samples))
    mentions = torch.from_numpy(np.stack(
        [np.stack([caption_mentions(s, c) for c in s.captions]) for s in samples]
    ))
    partial = PartialCaptions(
        model.context_length, cfg.partial_single, cfg.seed + 4, cfg.partial_single_weights
    )

    def loss_fn(idx: Tensor) -> Tensor:
        pick = torch.randint(0, tokens.shape[1], (len(idx),), generator=gen)
        texts, named = [tokens[idx, pick]], [mentions[idx, pick]]
        for _ in range(cfg.partial_per_image):
            ids, m = partial.batch(values[idx].numpy())
            texts.append(ids)
            named.append(m)
        length = max(int((t != 0).sum(1).max()) for t in texts)
        ids = torch.cat([F.pad(t, (0, max(0, length - t.shape[1])))[:, :length] for t in texts])
        named_all = torch.cat(named)
        v = values[idx]
        positives = ((named_all[None] == -1) | (named_all[None] == v[:, None])).all(-1)
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        return multi_positive_loss(model(x, ids), positives)

    groupings = [factor_keys(samples, tuple(g)) for g in cfg.clip_groupings]
    batch = min(cfg.batch_size, len(samples))
    sampler = hard_negative_batches(
        groupings, batch, gen, cfg.group_fraction, cfg.clip_grouping_weights
    )
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


def train_vit(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> WorldViT:
    """Supervised training on every factor at once (one head each, summed cross-entropies)."""
    labels = torch.from_numpy(factor_values(samples))
    torch.manual_seed(cfg.seed + 5)  # its own seed: the ViT does not depend on the other models
    model = WorldViT(num_classes={f: len(v) for f, v in FACTORS.items()}, **cfg.vit_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 5)

    def loss_fn(idx: Tensor) -> Tensor:
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        logits = model.factor_logits(x)
        return cast(Tensor, sum(
            (cfg.vit_shape_weight if f == "shape" else 1.0) * F.cross_entropy(logits[f], labels[idx, i])
            for i, f in enumerate(FACTORS)
        ))

    run_steps(model, loss_fn, len(samples), cfg.vit_steps, cfg.vit_lr, cfg, "vit")
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


def head_accuracy(vit: WorldViT, images: Tensor, samples: list[Sample]) -> dict:
    """Top-1 accuracy of each of the ViT's factor heads."""
    with torch.no_grad():
        logits = [vit.factor_logits(normalise(images[i : i + 500])) for i in range(0, len(images), 500)]
    return {f: float((torch.cat([lg[f] for lg in logits]).argmax(1).numpy()
                      == labels_of(samples, f)).mean()) for f in FACTORS}


def calibrate(models: dict[str, Any], data: dict[str, tuple[Tensor, list]]) -> dict:
    """All calibration figures: CLIP zero-shot, ShapeCNN head, ViT heads, linear probes."""
    clip, cnn, ae = (models[m] for m in ("world-clip", "world-cnn", "world-ae"))
    vit = models.get("world-vit")
    cal: dict = {name: {} for name in models}
    for split in ("test", "compositional"):
        images, samples = data[split]
        emb = embed(clip.encode_image, images)
        cal["world-clip"][f"zero_shot_{split}"] = zero_shot_accuracy(clip, emb, samples)
        pred = embed(cnn, images).argmax(1).numpy()
        cal["world-cnn"][f"head_shape_{split}"] = float(
            (pred == labels_of(samples, "shape")).mean()
        )
        if vit is not None:
            cal["world-vit"][f"heads_{split}"] = head_accuracy(vit, images, samples)
    feature_fns = {"world-clip": clip.encode_image, "world-cnn": cnn.features, "world-ae": ae.features}
    if vit is not None:
        feature_fns["world-vit"] = vit.features
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
    ]
    if "world-vit" in cal:
        lines += ["## WorldViT own heads (one per factor)", "",
                  "| split | " + " | ".join(factors) + " |", "|---" * (len(factors) + 1) + "|"]
        for split in ("test", "compositional"):
            row = cal["world-vit"][f"heads_{split}"]
            lines.append(f"| {split} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
        lines.append("")
    lines += [
        "## Linear probes (logistic regression fitted on val, evaluated on test)", "",
        "| model | " + " | ".join(factors) + " |",
        "|---" * (len(factors) + 1) + "|",
    ]
    for name in cal:
        row = cal[name]["probe_test"]
        lines.append(f"| {name} | " + " | ".join(f"{row[f]:.3f}" for f in factors) + " |")
    return "\n".join(lines) + "\n"


#: Everything from this line on in the calibration document is hand-written and kept on rewrites.
NOTES_MARKER = "<!-- notes below are kept when the training script rewrites this file -->"


def write_calibration(path: Path, tables: str) -> None:
    """Write the generated tables, keeping the hand-written notes after ``NOTES_MARKER``."""
    old = path.read_text() if path.is_file() else ""
    notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tables + "\n" + notes)


# --------------------------------------------------------------------------- entry points


def train_world(
    out_dir: Path | str | None = None,
    settings: TrainSettings | None = None,
    calibration_path: Path | str | None = None,
    command: str = REGENERATE_COMMAND,
    vit_only: bool = False,
) -> dict:
    """Train all world models, save them into ``out_dir`` and return the calibration.

    Args:
        out_dir: where weights and configs go (default: the package's ``world/weights``).
        settings: training settings (default: the full run).
        calibration_path: where to write the markdown calibration (None: don't write).
        command: command line recorded in the configs and the calibration document.
        vit_only: train only world-vit (it has its own seed, so it comes out as in a full run) and
            load the other models from ``out_dir``; the calibration covers all of them.

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
    if vit_only:
        # CNN and AE draw their initialisation after the CLIP's training: only the ViT stands alone
        models: dict[str, nn.Module] = {m: load_world_model(m, out) for m in CHAINED}
        trained: list[str] = []
    else:
        models = {
            "world-clip": train_clip(train_x, train_s, cfg),
            "world-cnn": train_cnn(train_x, train_s, cfg),
            "world-ae": train_ae(train_x, cfg),
        }
        trained = list(CHAINED)
    if cfg.vit_steps > 0:
        models["world-vit"] = train_vit(train_x, train_s, cfg)
        trained.append("world-vit")
    cal = calibrate(models, data)
    seconds = time.time() - start
    meta = {"command": command, "seed": cfg.seed, "training": asdict(cfg),
            "wall_time_s": round(seconds, 1), "calibration": cal}
    for name in trained:
        save_model(models[name], name, out, meta)
    text = calibration_markdown(cal, command, seconds, cfg)
    print(text, flush=True)
    if calibration_path is not None:
        write_calibration(Path(calibration_path), text)
    return cal


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images")
    parser.add_argument("--out", type=Path, default=None, help="output folder for weights")
    parser.add_argument("--vit-only", action="store_true",
                        help="retrain only world-vit (about 6 min) and load the other models from the "
                             "output folder; the calibration is rewritten for all of them")
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
    try:
        train_world(args.out, settings, calibration, command, vit_only=args.vit_only)
    except WorldError as err:
        parser.error(f"{err} (--vit-only needs the other world models in the output folder)")
    print(f"weights written to {args.out or DEFAULT_WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
