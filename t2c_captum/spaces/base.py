"""The Space: a CLIP-like model with an image encoder and a text encoder in one embedding space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._exceptions import DataError

__all__ = ["Space", "format_prompts"]

Preprocess = Callable[[Any], torch.Tensor]


def format_prompts(templates: Sequence[str], text: str) -> list[str]:
    """Fill ``text`` into each template (``"a photo of a {}."``); a template without ``{}`` gets
    the text appended."""
    return [t.format(text) if "{}" in t else f"{t} {text}" for t in templates]


class Space(nn.Module):
    """A text-image space: ``encode_image`` and ``encode_text`` map into the same ``embed_dim``.

    Subclasses implement :meth:`encode_image` (preprocessed images → ``[N, D]``) and
    :meth:`_encode_text_batch` (strings → ``[n, D]``). Embeddings are returned *unnormalised*; use
    :meth:`encode_text` for batching and optional normalisation.

    Args:
        name (str): stable identifier, e.g. ``"open_clip:ViT-B-16@openai"``.
        preprocess (callable): PIL image → tensor, from the model's own library.
        embed_dim (int): size of the shared embedding.
        templates (list of str, optional): default prompt templates with ``{}``. Default: ``["{}"]``
        input_size (tuple, optional): ``(3, H, W)``. Default: ``(3, 224, 224)``

    Attributes:
        default_vocabulary (str): the registered vocabulary that names concepts in this space when
            none is given (``"visual"``; a space for one domain sets its own).
    """

    default_vocabulary: str = "visual"

    def __init__(
        self,
        name: str,
        preprocess: Preprocess,
        embed_dim: int,
        *,
        templates: Sequence[str] | None = None,
        input_size: tuple[int, int, int] = (3, 224, 224),
    ) -> None:
        super().__init__()
        self.name = name
        self.preprocess = preprocess
        self.embed_dim = int(embed_dim)
        self.templates = list(templates or ["{}"])
        self.input_size = tuple(input_size)
        #: more identity fields (e.g. a digest of the weights), so caches follow weight changes
        self.identity_extra: dict[str, Any] = {}

    @property
    def identity(self) -> dict[str, Any]:
        """Model id, preprocessing and dimension: what keys stores and artifacts."""
        return {
            "id": self.name,
            "preprocess": " ".join(repr(self.preprocess).split()),
            "embed_dim": self.embed_dim,
            **self.identity_extra,
        }

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[N, D]`` of preprocessed images."""
        raise NotImplementedError

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`encode_image`, so a space can be a target encoder."""
        return self.encode_image(images)

    @torch.no_grad()
    def encode_text(
        self, texts: Sequence[str], *, normalize: bool = False, batch_size: int = 256
    ) -> torch.Tensor:
        """Text embeddings ``[len(texts), D]`` (float32, on CPU)."""
        texts = list(texts)
        if not texts:
            raise DataError("encode_text got no texts; give at least one string")
        if not all(isinstance(t, str) for t in texts):
            raise DataError("encode_text takes a list of strings")
        chunks = [
            self._encode_text_batch(texts[i : i + batch_size]).float().cpu()
            for i in range(0, len(texts), batch_size)
        ]
        out = torch.cat(chunks)
        return nn.functional.normalize(out, dim=-1) if normalize else out

    @torch.no_grad()
    def encode_prompts(self, texts: Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:
        """One unit vector per text: the normalised mean of its normalised template embeddings."""
        templates = list(templates or self.templates)
        prompts = [p for t in texts for p in format_prompts(templates, t)]
        emb = self.encode_text(prompts, normalize=True).view(len(texts), len(templates), -1)
        return nn.functional.normalize(emb.mean(dim=1), dim=-1)

    @torch.no_grad()
    def encode_prompt_sets(self, prompt_sets: Sequence[Sequence[str]]) -> torch.Tensor:
        """One unit vector per set of full prompts: the normalised mean of their embeddings."""
        if not prompt_sets or any(len(p) == 0 for p in prompt_sets):
            raise DataError("every class needs at least one prompt")
        flat = [p for prompts in prompt_sets for p in prompts]
        emb = self.encode_text(flat, normalize=True)
        rows, start = [], 0
        for prompts in prompt_sets:
            rows.append(emb[start : start + len(prompts)].mean(dim=0))
            start += len(prompts)
        return nn.functional.normalize(torch.stack(rows), dim=-1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, embed_dim={self.embed_dim}"
