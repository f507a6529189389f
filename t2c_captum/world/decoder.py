"""The concept world's decoder recipe: a small prefix decoder trained on the world's training captions
embedded by its tiny CLIP (``world-clip``), cached and keyed by the space's identity (which includes a
digest of its weights), the corpus and the settings; plus checks of what its captions name."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..decoders.prefix import PrefixDecoder, PrefixDecoderConfig, load_prefix_decoder
from ..decoders.train import TrainSettings, corpus_digest, train_prefix_decoder

__all__ = [
    "WORLD_DECODER_CONFIG",
    "WORLD_DECODER_SAMPLES",
    "WORLD_DECODER_SETTINGS",
    "caption_accuracy",
    "names_value",
    "world_corpus",
    "world_decoder",
    "world_shift_captions",
]

#: Training images whose captions (5 each) are the corpus.
WORLD_DECODER_SAMPLES = 2400
#: Layout of the world decoder (small: trains in about 75 s on one free CPU thread).
WORLD_DECODER_CONFIG = PrefixDecoderConfig(
    embed_dim=1,  # replaced by the space's size
    prefix_length=4,
    n_layer=2,
    n_embd=96,
    n_head=4,
    max_tokens=28,
    # the tiny CLIP's image embeddings sit nearest to vague captions ("two rosy things"): average more
    # of the memory than the library default (0.15 chosen on the val split; docs/decoder.md)
    memory_temperature=0.15,
)
#: 800 steps on the captions of 2400 images (chosen on the val split, docs/decoder.md): at 400 steps
#: the decoder is undertrained and which colour words it writes varies from run to run.
WORLD_DECODER_SETTINGS = TrainSettings(
    steps=800, batch_size=64, lr=2e-3, noise_std=0.08, checkpoint_every=100
)


def world_corpus(n_samples: int = WORLD_DECODER_SAMPLES) -> list[str]:
    """The captions of the first ``n_samples`` images of the world's training split."""
    from .generator import make_split

    return [c for s in make_split("train", n_samples) for c in s.captions]


def world_decoder(
    *,
    n_samples: int = WORLD_DECODER_SAMPLES,
    config: PrefixDecoderConfig | None = None,
    settings: TrainSettings | None = None,
    cache_dir: str | None = None,
    weights_dir: str | None = None,
    progress: bool = False,
    **_: Any,
) -> PrefixDecoder:
    """The concept world's caption decoder for ``world-clip``: trained on first use (resumably, under
    ``$T2C_CACHE/decoders/KEY``), loaded from the cache afterwards.

    The key covers the tiny CLIP's identity (with its weights digest), the corpus and the training
    settings, so retrained world weights get a new decoder; the projection temperature is applied at
    load time.
    """
    from ..features.extract import default_cache_dir
    from ..spaces import load_space

    space = load_space("world-clip", weights_dir=weights_dir)
    config = config or WORLD_DECODER_CONFIG
    settings = settings or WORLD_DECODER_SETTINGS
    corpus = world_corpus(n_samples)
    key_data = {
        "space": space.identity,
        "corpus": corpus_digest(corpus),
        "config": {k: v for k, v in asdict(config).items() if k != "memory_temperature"},  # inference only
        "settings": asdict(settings),
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else default_cache_dir() / "decoders" / f"world-{key}"
    if (folder / "decoder.json").is_file():
        decoder = load_prefix_decoder(folder / "decoder", space=space)
        decoder.config.memory_temperature = config.memory_temperature
        return decoder
    return train_prefix_decoder(
        space, corpus, config=config, settings=settings, out=folder, resume=True, progress=progress, threads=1
    )


def _phrases(factor: str, value: str) -> list[str]:
    from .tasks import factor_words

    return sorted(factor_words(factor, value), key=len, reverse=True)


def _strip_scene(text: str, keep: str) -> str:
    """Remove background and position phrases (all values) unless ``keep`` is that factor, so that a
    'striped background' does not count as a striped object."""
    from .generator import FACTORS

    for factor in ("background", "position"):
        if factor == keep:
            continue
        for value in FACTORS[factor]:
            for phrase in _phrases(factor, value):
                text = re.sub(rf"\b{re.escape(phrase)}\b", " ", text)
    return text


def names_value(caption: str, factor: str, value: str) -> bool:
    """Whether ``caption`` names ``factor == value`` with one of the world's words for it."""
    text = _strip_scene(" ".join(caption.lower().replace(",", " ").split()), factor)
    return any(re.search(rf"\b{re.escape(p)}\b", text) for p in _phrases(factor, value))


def caption_accuracy(
    captions: list[str], samples: list[Any], factors: tuple[str, ...] = ("shape", "colour")
) -> dict[str, float]:
    """Share of captions naming each factor's true value, and all of them at once (``"all"``)."""
    hits = np.array(
        [[names_value(c, f, s.value(f)) for f in factors] for c, s in zip(captions, samples, strict=True)]
    )
    out = {f: float(hits[:, i].mean()) for i, f in enumerate(factors)}
    out["all"] = float(hits.all(axis=1).mean())
    return out


def world_shift_captions(
    decoder: Any, backbone: Any, aligner: Any, tasks: Any = None, n: int = 500, **options: Any
) -> list[dict[str, Any]]:
    """For each injected shift task: the caption of its direction (mean aligned target − mean
    aligned source) and whether it names the shifted factor value."""
    from ..data import open_source
    from ..decoders.captioning import caption_direction, shift_direction
    from ..features import extract_features
    from .tasks import SHIFT_TASKS

    rows = []
    for task in tasks if tasks is not None else SHIFT_TASKS:
        a, b = task.make(n=n)
        feats = [
            extract_features(open_source(d), {"source": backbone}, progress=False).load(["source"])["source"]
            for d in (a, b)
        ]
        direction = shift_direction(feats[0], feats[1], aligner)
        caption = caption_direction(decoder, direction, kind="space", **options)[0]
        rows.append(
            {
                "task": task.name,
                "factor": task.factor,
                "value": task.value,
                "caption": caption,
                "named": names_value(caption, task.factor, task.value),
            }
        )
    return rows
