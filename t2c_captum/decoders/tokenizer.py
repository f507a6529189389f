"""Tokenizers of the caption decoders and the compact vocabulary that keeps a decoder small.

A decoder trained on one corpus only ever needs the token ids that occur in it, so its embedding table
holds those ids plus four special rows (pad, start, end, unknown), not the base tokenizer's 49k (CLIP)
or 50k (GPT-2) rows. The base tokenizer is open_clip's CLIP BPE tokenizer (offline, always available)
or any Hugging Face tokenizer saved in a local directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .._exceptions import DataError

__all__ = ["SPECIAL_TOKENS", "CompactVocabulary", "TextTokenizer", "clean_text", "read_corpus"]

#: Compact indices of the special tokens, the same in every decoder.
SPECIAL_TOKENS = {"pad": 0, "start": 1, "end": 2, "unknown": 3}
_N_SPECIAL = len(SPECIAL_TOKENS)


def clean_text(text: str) -> str:
    """Undo the spacing a BPE decode leaves around punctuation and hyphens."""
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"(\w)\s+-\s+(\w)", r"\1-\2", text)
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _clip_bpe() -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


class TextTokenizer:
    """A base tokenizer: ``encode(text) -> ids`` and ``decode(ids) -> text``, no special tokens.

    Args:
        kind (str, optional): ``"clip"`` (open_clip's CLIP BPE, offline) or ``"hf"`` (a Hugging Face
            tokenizer from ``path``). Default: ``"clip"``
        path (str, optional): local directory (or hub name, if the hub is reachable) of the Hugging
            Face tokenizer; only for ``kind="hf"``.
    """

    def __init__(self, kind: str = "clip", path: str | None = None) -> None:
        if kind not in ("clip", "hf"):
            raise DataError(f"tokenizer kind must be 'clip' or 'hf', not {kind!r}")
        if kind == "hf" and not path:
            raise DataError("a Hugging Face tokenizer needs path= (a local directory with its files)")
        self.kind, self.path = kind, path
        self._hf: Any = None
        if kind == "hf":
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(str(path))
            except Exception as exc:
                raise DataError(
                    f"could not load a Hugging Face tokenizer from {path!r} ({type(exc).__name__}: {exc}). "
                    "Pass a local directory saved with tokenizer.save_pretrained(DIR)."
                ) from exc

    @classmethod
    def from_hf(cls, tokenizer: Any) -> TextTokenizer:
        """Wrap an already loaded Hugging Face tokenizer (its ``name_or_path`` is recorded)."""
        tok = cls.__new__(cls)
        tok.kind, tok.path, tok._hf = "hf", str(getattr(tokenizer, "name_or_path", "") or ""), tokenizer
        return tok

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no start/end tokens)."""
        if self._hf is not None:
            return list(self._hf.encode(text, add_special_tokens=False))
        return list(_clip_bpe().encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, with BPE spacing cleaned up."""
        if self._hf is not None:
            return clean_text(self._hf.decode(list(ids), skip_special_tokens=True))
        return clean_text(_clip_bpe().decode(list(ids)))

    def describe(self) -> dict[str, Any]:
        """What the artifact records to rebuild this tokenizer."""
        return {"kind": self.kind, "path": self.path}

    @classmethod
    def from_description(cls, info: dict[str, Any] | None) -> TextTokenizer:
        info = info or {"kind": "clip"}
        return cls(str(info.get("kind", "clip")), info.get("path"))

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}" + (f", path={self.path!r})" if self.path else ")")


class CompactVocabulary:
    """Base-tokenizer ids that occur in a corpus, mapped to compact indices after the special tokens.

    Args:
        ids (iterable of int): the base ids kept (duplicates are dropped, order is sorted).
    """

    def __init__(self, ids: Iterable[int]) -> None:
        self.ids = torch.as_tensor(sorted(set(int(i) for i in ids)), dtype=torch.long)
        self._index = {int(b): n + _N_SPECIAL for n, b in enumerate(self.ids.tolist())}

    @classmethod
    def from_token_lists(cls, token_lists: Iterable[Sequence[int]]) -> CompactVocabulary:
        return cls(i for tokens in token_lists for i in tokens)

    def __len__(self) -> int:
        return _N_SPECIAL + int(self.ids.numel())

    def to_compact(self, ids: Sequence[int]) -> list[int]:
        """Compact indices (ids outside the vocabulary become ``unknown``)."""
        unk = SPECIAL_TOKENS["unknown"]
        return [self._index.get(int(i), unk) for i in ids]

    def to_base(self, compact: Sequence[int]) -> list[int]:
        """Base ids of compact indices; special tokens are dropped."""
        base = self.ids.tolist()
        return [base[c - _N_SPECIAL] for c in compact if c >= _N_SPECIAL]

    def coverage(self, ids: Sequence[int]) -> float:
        """Share of ``ids`` the vocabulary knows."""
        return sum(int(i) in self._index for i in ids) / max(1, len(ids))


def load_caption_corpus(name: str, **options: Any) -> list[str]:
    """The captions of a corpus registered through the ``register_caption_corpora`` hook (the
    concept world's is ``"world"``); ``options`` go to its loader (e.g. ``n_samples``).

    Raises :class:`~t2c_captum.UnknownNameError` (with the registered names) for an unknown name.

    Examples::

        >>> captions = load_caption_corpus("world", n_samples=200)
    """
    from ..plugins import get_registries

    loader = get_registries().corpora.get(name)
    captions = loader(**options)
    if not isinstance(captions, list | tuple) or not all(isinstance(c, str) for c in captions):
        raise DataError(f"caption corpus {name!r} did not give a list of strings")
    return list(captions)


def read_corpus(corpus: Any) -> list[str]:
    """Captions from a list of strings, a ``.txt`` (one per line) / ``.json`` (a list of strings, or
    of objects with a ``caption`` field) / ``.csv`` (the ``caption`` column, else the first) file, or
    the name of a registered caption corpus (:func:`load_caption_corpus`)."""
    import csv
    import json

    if isinstance(corpus, (str, Path)) and Path(corpus).suffix in {".txt", ".json", ".csv"}:
        path = Path(corpus)
        if not path.is_file():
            raise DataError(f"corpus file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise DataError(f"{str(path)!r} must hold a JSON list of captions")
            captions = [d["caption"] if isinstance(d, dict) and "caption" in d else d for d in data]
        elif path.suffix == ".csv":
            rows = [r for r in csv.reader(text.splitlines()) if r]
            col = 0
            if rows and "caption" in [c.strip().lower() for c in rows[0]]:
                col = [c.strip().lower() for c in rows[0]].index("caption")
                rows = rows[1:]
            captions = [r[col] for r in rows if len(r) > col]
        else:
            captions = text.splitlines()
    elif isinstance(corpus, str):
        from ..plugins import get_registries

        corpora = get_registries().corpora
        if corpus not in corpora:
            raise DataError(
                f"corpus {corpus!r} is neither a .txt/.json/.csv file, a list of captions nor a "
                f"registered caption corpus (registered: {', '.join(corpora.names()) or 'none'})"
            )
        captions = load_caption_corpus(corpus)
    else:
        captions = list(corpus)
    if not all(isinstance(c, str) for c in captions):
        raise DataError("a corpus must be a list of strings (captions)")
    captions = [" ".join(c.split()) for c in captions if c and c.strip()]
    if not captions:
        raise DataError(
            "the corpus holds no captions; give a non-empty list of strings or a file with one "
            "caption per line"
        )
    return captions
