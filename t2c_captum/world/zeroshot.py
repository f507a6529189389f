"""Zero-shot prompting of the world's tiny CLIP: prompt templates per factor and a classifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from t2c_captum.world.generator import FACTORS, SYNONYMS, check_factor

__all__ = ["FACTOR_TEMPLATES", "class_prompts", "zero_shot_weights"]

#: Factor -> prompt templates; ``{}`` takes the class phrase (see :func:`class_prompts`).
FACTOR_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("a photo of a {}", "an image showing a {}", "a {}"),
    "colour": ("a photo of a {} object", "a {} shape", "an image showing a {} thing"),
    "pattern": ("a photo of a {} object", "a {} shape", "an image showing a {} thing"),
    "size": ("a photo of a {} object", "a {} shape", "a {} thing"),
    "background": (
        "an object on a {} background",
        "a shape on a {} background",
        "a thing against a {} background",
    ),
    "position": ("a photo of an object {}", "a shape {}", "an image showing a thing {}"),
    "count": ("a photo of {} objects", "{} shapes", "an image showing {} things"),
}


def _class_phrase(factor: str, value: str) -> str:
    """Word(s) filled into a template: canonical word, or the first phrase for positions."""
    if factor == "position":
        return str(SYNONYMS["position"][value][0])
    return value


def _fix_article(text: str) -> str:
    """Turn 'a orange' into 'an orange' (and back for consonants)."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] in ("a", "an"):
            words[i] = "an" if words[i + 1][:1] in tuple("aeiou") else "a"
    return " ".join(words)


def class_prompts(factor: str, templates: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Class name -> filled prompts for one factor.

    Args:
        factor: a factor name of the world.
        templates: override of ``FACTOR_TEMPLATES[factor]``.

    Returns:
        Canonical class word -> list of prompts (articles fixed).
    """
    check_factor(factor)
    templates = FACTOR_TEMPLATES[factor] if templates is None else templates
    return {
        value: [_fix_article(t.format(_class_phrase(factor, value))) for t in templates]
        for value in FACTORS[factor]
    }


@torch.no_grad()
def zero_shot_weights(model: Any, factor: str) -> Tensor:
    """Unit-norm class embeddings ``[n_classes, D]`` (mean of normalised prompt embeddings).

    Args:
        model: a model with ``encode_text(list[str]) -> Tensor`` (e.g. ``TinyCLIP``).
        factor: a factor name of the world.

    Returns:
        One row per canonical class word, in ``FACTORS[factor]`` order.
    """
    rows = []
    for prompts in class_prompts(factor).values():
        emb = F.normalize(model.encode_text(prompts).float(), dim=-1)
        rows.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(rows)
