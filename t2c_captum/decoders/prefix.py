"""The text-only prefix decoder: a GPT-2-architecture language model conditioned on a space's
embedding through a learned prefix, trained on captions alone (the DeCap idea).

A caption's text embedding (normalised, with a little Gaussian noise during training) is mapped by an
MLP to ``prefix_length`` token embeddings; GPT-2 continues them with the caption. At inference an image
(or aligned) embedding is first projected onto the memory of the training captions' text embeddings,
``normalise(softmax(sim / τ) · memory)``, which closes the gap between the image and text sides of the
space.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._exceptions import CheckpointFormatError, DataError
from .._identity import artifact_stem
from .._io import atomic_write_json, atomic_write_tensors, load_state_dict_file, read_json
from .base import check_embeddings, check_space, project_onto
from .generation import GenerationOptions, generate
from .tokenizer import SPECIAL_TOKENS, CompactVocabulary, TextTokenizer

__all__ = ["DECODER_FORMAT", "PrefixDecoder", "PrefixDecoderConfig", "load_prefix_decoder"]

DECODER_FORMAT = 1
_TIED = "gpt.lm_head.weight"


@dataclass
class PrefixDecoderConfig:
    """Shape of a :class:`PrefixDecoder`.

    Args:
        embed_dim (int): size of the space's embeddings.
        prefix_length (int): prefix tokens the embedding becomes. Default: ``8``
        n_layer / n_embd / n_head (int): GPT-2 layout. Default: ``3`` / ``128`` / ``4``
        max_tokens (int): longest caption in tokens (longer ones are cut). Default: ``32``
        mapper_hidden (int, optional): hidden width of the prefix MLP. Default: ``prefix_length *
            n_embd // 2``
        memory_temperature (float): ``τ`` of the projection onto the text memory. Default: ``0.01``
    """

    embed_dim: int
    prefix_length: int = 8
    n_layer: int = 3
    n_embd: int = 128
    n_head: int = 4
    max_tokens: int = 32
    mapper_hidden: int | None = None
    memory_temperature: float = 0.01

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.prefix_length < 1 or self.max_tokens < 2:
            raise DataError("embed_dim and prefix_length must be >= 1 and max_tokens >= 2")
        if self.n_embd % self.n_head:
            raise DataError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.memory_temperature <= 0:
            raise DataError("memory_temperature must be > 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrefixDecoderConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class PrefixDecoder(nn.Module):
    """GPT-2 conditioned on a space embedding through a prefix; decodes embeddings into captions.

    Build one with :func:`~t2c_captum.decoders.train_prefix_decoder`, or load a saved one with
    :meth:`load`. Inputs are normalised; ``decode(..., project=True)`` (the default) first projects them
    onto the text memory.

    Args:
        config (PrefixDecoderConfig): the layout.
        vocabulary (CompactVocabulary): base-tokenizer ids the decoder can write.
        tokenizer (TextTokenizer, optional): the base tokenizer. Default: CLIP BPE
        space_identity (dict, optional): identity of the space the decoder is trained for.
    """

    memory: torch.Tensor

    def __init__(
        self,
        config: PrefixDecoderConfig,
        vocabulary: CompactVocabulary,
        tokenizer: TextTokenizer | None = None,
        space_identity: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.config = config
        self.vocabulary = vocabulary
        self.tokenizer = tokenizer or TextTokenizer("clip")
        self.space_identity: dict[str, Any] = dict(space_identity or {})
        self.embed_dim = int(config.embed_dim)
        self.training_stats: dict[str, Any] = {}
        p, h = config.prefix_length, config.n_embd
        hidden = config.mapper_hidden or max(h, p * h // 2)
        self.mapper = nn.Sequential(nn.Linear(config.embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, p * h))
        gpt_config = GPT2Config(
            vocab_size=len(vocabulary),
            n_positions=p + config.max_tokens + 2,
            n_embd=h,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=SPECIAL_TOKENS["start"],
            eos_token_id=SPECIAL_TOKENS["end"],
            pad_token_id=SPECIAL_TOKENS["pad"],
            tie_word_embeddings=True,
        )
        self.gpt = GPT2LMHeadModel(gpt_config)
        self.register_buffer("memory", torch.empty(0, config.embed_dim))

    # -- model ---------------------------------------------------------------------------------
    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, prefix_length, n_embd]`` prefix embeddings of (normalised) ``[N, D]`` embeddings."""
        return self.mapper(embeddings).view(
            embeddings.shape[0], self.config.prefix_length, self.config.n_embd
        )

    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """``[N, max_tokens + 1]`` compact ids: start, the caption's tokens, end, then padding."""
        length = self.config.max_tokens + 1
        out = torch.full((len(captions), length), SPECIAL_TOKENS["pad"], dtype=torch.long)
        for i, caption in enumerate(captions):
            ids = self.vocabulary.to_compact(self.tokenizer.encode(caption))[: self.config.max_tokens - 1]
            row = [SPECIAL_TOKENS["start"], *ids, SPECIAL_TOKENS["end"]]
            out[i, : len(row)] = torch.as_tensor(row)
        return out

    def loss(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token cross-entropy of ``tokens`` (from :meth:`encode_captions`) after
        the prefix of ``embeddings``; padding is ignored."""
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        keep = int((targets != SPECIAL_TOKENS["pad"]).sum(1).max())
        inputs, targets = inputs[:, :keep], targets[:, :keep]
        prefix = self.prefix(embeddings)
        x = torch.cat([prefix, self.gpt.get_input_embeddings()(inputs)], dim=1)
        logits = self.gpt(inputs_embeds=x).logits[:, prefix.shape[1] :]
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=SPECIAL_TOKENS["pad"]
        )

    # -- inference -----------------------------------------------------------------------------
    def project(self, embeddings: Any, *, centre: bool = False) -> torch.Tensor:
        """Unit embeddings moved onto the text memory (see :func:`~t2c_captum.decoders.project_onto`)."""
        x = nn.functional.normalize(check_embeddings(embeddings, self.embed_dim), dim=-1)
        if not self.memory.numel():
            raise DataError("this decoder has no text memory; decode with project=False")
        return project_onto(
            x.to(self.memory.device), self.memory, self.config.memory_temperature, centre=centre
        )

    @torch.no_grad()
    def decode(
        self,
        embeddings: Any,
        *,
        project: bool | None = None,
        batch_size: int = 256,
        **options: Any,
    ) -> list[str]:
        """Captions of ``[N, D]`` (or ``[D]``) embeddings of the space.

        Args:
            embeddings: image, aligned or text embeddings (normalised here).
            project (bool, optional): project onto the text memory first; ``None`` means yes when the
                decoder has a memory (right for image and aligned embeddings; pass ``False`` for text
                embeddings). Default: ``None``
            batch_size (int, optional): rows decoded together. Default: ``256``
            **options: :class:`~t2c_captum.decoders.GenerationOptions` fields (``strategy``,
                ``beam_size``, ``top_p``, ``temperature``, ``seed``, ``max_new_tokens``, ...).
        """
        return [
            text
            for text, _ in self.decode_scored(embeddings, project=project, batch_size=batch_size, **options)
        ]

    @torch.no_grad()
    def decode_scored(
        self, embeddings: Any, *, project: bool | None = None, batch_size: int = 256, **options: Any
    ) -> list[tuple[str, float]]:
        """Like :meth:`decode`, with each caption's total log-probability."""
        x = nn.functional.normalize(check_embeddings(embeddings, self.embed_dim), dim=-1)
        if project is None:
            project = bool(self.memory.numel())
        if project:
            x = self.project(x)
        options.setdefault("max_new_tokens", self.config.max_tokens)
        opts = GenerationOptions(**options)
        was_training = self.training
        self.eval()
        out: list[tuple[str, float]] = []
        device = next(self.parameters()).device
        try:
            for start in range(0, x.shape[0], batch_size):
                prefix = self.prefix(x[start : start + batch_size].to(device))
                for g in generate(
                    self.gpt,
                    prefix,
                    stop_ids=[SPECIAL_TOKENS["end"]],
                    start_ids=[SPECIAL_TOKENS["start"]],
                    banned_ids=[SPECIAL_TOKENS["pad"], SPECIAL_TOKENS["start"]],
                    options=opts,
                ):
                    out.append((self.tokenizer.decode(self.vocabulary.to_base(g.ids)), g.log_prob))
        finally:
            self.train(was_training)
        return out

    def check_space(self, space: Any = None, identity: dict[str, Any] | None = None) -> None:
        """Raise when ``space`` (or an aligner's ``target_`` identity) is not the decoder's space."""
        check_space(self, space, identity)

    # -- persistence ---------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the artifact (the tied output matrix is stored once)."""
        state = {k: v for k, v in self.state_dict().items() if k != _TIED}
        state["vocab_ids"] = self.vocabulary.ids
        return state

    def metadata(self) -> dict[str, Any]:
        from .._version import __version__

        return {
            "format_version": DECODER_FORMAT,
            "library_version": __version__,
            "kind": "prefix",
            "config": asdict(self.config),
            "tokenizer": self.tokenizer.describe(),
            "space": self.space_identity,
            "training": self.training_stats,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``NAME.safetensors`` + ``NAME.json`` (atomic); returns the JSON path."""
        stem = artifact_stem(path, "decoder")
        atomic_write_tensors(
            stem.with_suffix(".safetensors"), self.state_tensors(), {"format": "t2c_captum.decoder"}
        )
        atomic_write_json(stem.with_suffix(".json"), self.metadata())
        return stem.with_suffix(".json")

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: Any = None) -> PrefixDecoder:
        """Load a saved decoder; with ``space`` its identity is checked against the decoder's."""
        return load_prefix_decoder(path, space=space)

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load :meth:`state_tensors` output, naming any missing or unexpected tensor."""
        tensors = {k: v for k, v in tensors.items() if k != "vocab_ids"}
        if "memory" in tensors:
            self.memory = tensors["memory"].float()
        result = self.load_state_dict(tensors, strict=False)
        missing = [k for k in result.missing_keys if k != _TIED]
        if missing or result.unexpected_keys:
            raise CheckpointFormatError(
                f"{source} does not fit this decoder's layout: missing {missing}, unexpected "
                f"{list(result.unexpected_keys)}; was it saved by another version or configuration?"
            )
        self.gpt.tie_weights()

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"embed_dim={c.embed_dim}, prefix_length={c.prefix_length}, layers={c.n_layer}, "
            f"n_embd={c.n_embd}, vocabulary={len(self.vocabulary)}, memory={self.memory.shape[0]}"
        )


def load_prefix_decoder(path: str | os.PathLike[str], space: Any = None) -> PrefixDecoder:
    """Load a :class:`PrefixDecoder` artifact (``NAME``, ``NAME.json`` or a folder holding
    ``decoder.json``); with ``space`` the decoder's space identity is checked."""
    stem = artifact_stem(path, "decoder")
    json_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not json_path.is_file():
        raise CheckpointFormatError(
            f"no decoder metadata at {str(json_path)!r}; a decoder is saved as NAME.json + "
            "NAME.safetensors (PrefixDecoder.save)"
        )
    meta = read_json(json_path)
    if not isinstance(meta, dict) or meta.get("kind") != "prefix":
        raise CheckpointFormatError(f"{str(json_path)!r} is not prefix-decoder metadata")
    if int(meta.get("format_version", 0)) > DECODER_FORMAT:
        raise CheckpointFormatError(
            f"{str(json_path)!r} uses decoder format {meta['format_version']}, newer than this library "
            f"understands ({DECODER_FORMAT}); upgrade t2c_captum"
        )
    tensors = load_state_dict_file(tensor_path)
    if "vocab_ids" not in tensors:
        raise CheckpointFormatError(f"{str(tensor_path)!r} lacks the decoder's vocabulary (vocab_ids)")
    decoder = PrefixDecoder(
        PrefixDecoderConfig.from_dict(meta.get("config", {})),
        CompactVocabulary(tensors["vocab_ids"].tolist()),
        TextTokenizer.from_description(meta.get("tokenizer")),
        meta.get("space", {}),
    )
    decoder.load_tensors(tensors, repr(str(tensor_path)))
    decoder.training_stats = meta.get("training", {})
    decoder.eval()
    if space is not None:
        decoder.check_space(space)
    return decoder
