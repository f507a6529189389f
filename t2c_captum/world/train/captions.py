"""Training captions of the tiny CLIP: the factors a caption names, the partial captions drawn during
training, and the vocabulary of BPE ids the text tower knows."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t2c_captum.world.generator import CANONICAL_COUNTS, FACTORS, GENERIC_NOUNS, SYNONYMS, Sample
from t2c_captum.world.models import clip_special_ids, clip_tokenize
from t2c_captum.world.zeroshot import class_prompts

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


def caption_vocabulary(samples: list[Sample]) -> tuple[Tensor, Tensor]:
    """Token ids of all captions ``[N, k, L]`` and the sorted BPE ids the tiny CLIP will know."""
    k = len(samples[0].captions)
    ids = clip_tokenize([c for s in samples for c in s.captions]).view(len(samples), k, -1)
    prompts = [p for f in FACTORS for ps in class_prompts(f).values() for p in ps]
    prompts += PartialCaptions.vocabulary_words()
    vocab = torch.cat([ids.flatten(), clip_tokenize(prompts).flatten()]).unique(sorted=True)
    return ids, vocab
