"""The ConceptBank: concept texts turned into unit CLIP text embeddings, cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._exceptions import CheckpointFormatError, DataError, DimensionMismatchError, UnknownNameError
from .._identity import identity_differences, recorded_id
from .._io import atomic_write_tensors, keyed_identity, load_state_dict_file
from .vocabulary import Vocabulary, check_concepts, check_groups

__all__ = ["ConceptBank", "Vocabulary", "check_concepts", "check_groups", "make_bank"]

_FORMAT = 1


def _prompt_sets(
    concepts: list[str],
    prompts: Mapping[str, Sequence[str]] | None,
    templates: Sequence[str],
    class_names: Sequence[str] | None,
) -> list[list[str]]:
    if prompts is not None:
        missing = [c for c in concepts if not prompts.get(c)]
        if missing:
            raise DataError(f"no prompts for concepts {missing[:5]}")
        return [list(prompts[c]) for c in concepts]
    from ..spaces.base import format_prompts

    if class_names:
        return [
            [p for cls in class_names for p in format_prompts(templates, f"{c} {cls}")]
            for c in concepts
        ]
    return [format_prompts(templates, c) for c in concepts]


class ConceptBank:
    """Concept texts and their unit text embeddings ``[K, D]`` in one space.

    Build with :meth:`build` (which caches the embeddings on disk, keyed by the space's identity and
    every text that went into them) or :meth:`from_vocabulary`; score features with
    :func:`~t2c_captum.concepts.concept_scores`.

    Args:
        concepts (list of str): unique concept names.
        embeddings (Tensor): ``[K, D]`` unit vectors, one row per concept.
        space_id (str): the space that embedded them.
        info (dict, optional): how they were built (templates, class names, vocabulary).
        groups (dict, optional): concept → group name (see :class:`Vocabulary`); concepts left out
            have no group. Default: ``None`` (no groups)

    Examples::

        >>> bank = ConceptBank.build(space, ["red", "striped", "circle"])
        >>> bank.index("striped")
        1
    """

    def __init__(
        self,
        concepts: Sequence[str],
        embeddings: torch.Tensor,
        space_id: str,
        info: dict[str, Any] | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.concepts = check_concepts(concepts)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(self.concepts):
            raise DimensionMismatchError(
                f"{len(self.concepts)} concepts need embeddings of shape [{len(self.concepts)}, D], "
                f"got {tuple(embeddings.shape)}"
            )
        self.embeddings = torch.nn.functional.normalize(embeddings.float().cpu(), dim=-1)
        self.space_id = space_id
        self.info = dict(info or {})
        self._index = {c: i for i, c in enumerate(self.concepts)}
        self._set_groups(groups)

    def _set_groups(self, groups: Mapping[str, str] | None) -> None:
        self._groups = check_groups(groups, self.concepts)
        self._members: dict[str, list[str]] = {}
        for concept, group in self._groups.items():
            self._members.setdefault(group, []).append(concept)

    @property
    def groups(self) -> dict[str, str]:
        """Concept → group name, for the concepts whose group is known (``{}`` when none is)."""
        return dict(self._groups)

    def with_groups(self, groups: Mapping[str, str] | None) -> ConceptBank:
        """The same bank (same embeddings) with other groups (concept → group name; ``None``: none)."""
        return ConceptBank(self.concepts, self.embeddings, self.space_id, self.info, groups)

    def alternatives(self, concept: str) -> list[str]:
        """The other concepts of ``concept``'s group, in bank order (``[]`` when it has no group)."""
        self.index(concept)
        group = self._groups.get(concept)
        return [c for c in self._members.get(group, []) if c != concept] if group is not None else []

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        space: Any,
        concepts: Sequence[str] | Mapping[str, Sequence[str]] | Vocabulary,
        *,
        templates: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> ConceptBank:
        """Embed concepts with ``space``'s text encoder (or read them from the cache).

        Args:
            space (Space): the text-image space.
            concepts: a list of texts, a mapping concept → prompts, or a :class:`Vocabulary`.
            templates (list of str, optional): templates with ``{}``; default the space's own.
                Ignored for concepts that come with prompts.
            class_names (list of str, optional): make the concepts class-agnostic: embed
                ``template.format(f"{concept} {class}")`` for every class and average.
            cache_dir (path, optional): cache folder. Default: ``$T2C_CACHE/concept-banks``
            cache (bool, optional): read and write the cache. Default: ``True``

        The vocabulary's ``groups`` are kept in :attr:`groups` (not in the cache key: they do not
        change the embeddings, and a bank read from the cache gets the vocabulary's groups).
        """
        vocab = _as_vocabulary(concepts)
        names = check_concepts(vocab.concepts)
        groups = check_groups(vocab.groups, names)
        tmpl = list(templates or getattr(space, "templates", None) or ["{}"])
        prompt_sets = _prompt_sets(names, vocab.prompts, tmpl, class_names)
        space_identity = dict(getattr(space, "identity", {"id": getattr(space, "name", "space")}))
        key = _cache_key(keyed_identity(space), names, prompt_sets)  # with the weights
        info = {
            "vocabulary": vocab.name,
            "templates": None if vocab.prompts else tmpl,
            "class_names": list(class_names) if class_names else None,
            "key": key,
        }
        space_id = str(space_identity.get("id"))
        path = _cache_path(cache_dir, key)
        if cache and path.is_file():
            try:
                cached = cls.load(path)
            except (CheckpointFormatError, DataError, DimensionMismatchError):
                pass  # a corrupted cache entry is rebuilt below
            else:
                cached._set_groups(groups)  # the entry may have been written with other groups
                return cached
        embeddings = space.encode_prompt_sets(prompt_sets)
        bank = cls(names, embeddings, space_id, info, groups)
        if cache:
            bank.save(path)
        return bank

    @classmethod
    def from_vocabulary(cls, space: Any, vocabulary: str, **options: Any) -> ConceptBank:
        """A bank of a registered vocabulary (``"visual"``, ``"imagenet"``, ``"world"``) or a file."""
        from .resolve import resolve_vocabulary

        return cls.build(space, resolve_vocabulary(vocabulary), **options)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.concepts)

    def __contains__(self, concept: object) -> bool:
        return concept in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.concepts)

    @property
    def dim(self) -> int:
        """Embedding size ``D``."""
        return int(self.embeddings.shape[1])

    def index(self, concept: str) -> int:
        """Row of ``concept``; an unknown concept raises with close matches."""
        try:
            return self._index[concept]
        except KeyError:
            raise UnknownNameError(
                "concept", concept, self.concepts, hint="Add it to the bank's concepts."
            ) from None

    def indices(self, concepts: Sequence[str]) -> list[int]:
        """Rows of several concepts."""
        return [self.index(c) for c in concepts]

    def vector(self, concept: str) -> torch.Tensor:
        """Unit embedding ``[D]`` of one concept."""
        return self.embeddings[self.index(concept)]

    def subset(self, concepts: Sequence[str]) -> ConceptBank:
        """A bank of some of these concepts (same embeddings)."""
        rows = self.indices(check_concepts(concepts))
        names = [self.concepts[i] for i in rows]
        groups = {c: self._groups[c] for c in names if c in self._groups}
        return ConceptBank(names, self.embeddings[rows], self.space_id, self.info, groups)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (safetensors; concepts, groups and build info in its metadata), atomically."""
        out = Path(path)
        meta = {
            "format": str(_FORMAT),
            "space_id": self.space_id,
            "concepts": json.dumps(self.concepts),
            "info": json.dumps(self.info),
            "groups": json.dumps(self._groups),
        }
        atomic_write_tensors(out, {"embeddings": self.embeddings}, metadata=meta)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConceptBank:
        """Read a bank written by :meth:`save`."""
        from safetensors import safe_open

        tensors = load_state_dict_file(path)
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if "concepts" not in meta or "embeddings" not in tensors:
            raise CheckpointFormatError(f"{str(path)!r} is not a saved ConceptBank")
        return cls(json.loads(meta["concepts"]), tensors["embeddings"], meta.get("space_id", ""),
                   json.loads(meta.get("info", "{}")), json.loads(meta.get("groups", "{}")))

    def check_space(self, space_id: str) -> None:
        """Raise :class:`DimensionMismatchError` if the bank was embedded by another space than
        ``space_id`` (compared as ``_identity.COMPARED["bank"]``; an empty id on either side is not
        compared)."""
        if identity_differences("bank", recorded_id(self.space_id), recorded_id(space_id)):
            raise DimensionMismatchError(
                f"the concept bank was embedded by {self.space_id!r} but the features are aligned to "
                f"{space_id!r}; rebuild the bank with that space"
            )

    def check_aligner(self, aligner: Any) -> None:
        """Raise if ``aligner`` (when it records its target space) maps into another space."""
        target = getattr(aligner, "target_", None) or {}
        if target.get("id"):
            self.check_space(str(target["id"]))

    def __repr__(self) -> str:
        shown = ", ".join(self.concepts[:5]) + (", ..." if len(self) > 5 else "")
        return f"ConceptBank({len(self)} concepts in {self.space_id!r}: {shown})"


def _as_vocabulary(concepts: Sequence[str] | Mapping[str, Sequence[str]] | Vocabulary) -> Vocabulary:
    if isinstance(concepts, Vocabulary):
        return concepts
    if isinstance(concepts, Mapping):
        return Vocabulary(list(concepts), {k: list(v) for k, v in concepts.items()})
    return Vocabulary(check_concepts(concepts))


def _cache_key(space: dict[str, Any], concepts: list[str], prompt_sets: list[list[str]]) -> str:
    blob = json.dumps({"space": space, "concepts": concepts, "prompts": prompt_sets}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_path(cache_dir: str | os.PathLike[str] | None, key: str) -> Path:
    from ..features.extract import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "concept-banks"
    return root / f"bank-{re.sub(r'[^0-9a-f]', '', key)[:24]}.safetensors"


def make_bank(space: Any, vocabulary: str | None, concepts: str | None, default: Any = None) -> ConceptBank:
    """A concept bank from ``--concepts a,b,c`` or ``--vocabulary NAME``.

    Without either: ``default`` (a probe's own vocabulary), else the space's ``default_vocabulary``
    (``world`` for the concept world's tiny CLIP, ``visual`` for other spaces).
    """
    from .resolve import default_vocabulary, resolve_vocabulary

    if concepts:
        return ConceptBank.build(space, Vocabulary([c.strip() for c in concepts.split(",") if c.strip()]))
    chosen = vocabulary or default or default_vocabulary(space)
    return ConceptBank.build(space, resolve_vocabulary(chosen) if isinstance(chosen, str) else chosen)
