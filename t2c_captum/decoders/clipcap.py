"""Loading public ClipCap checkpoints (Mokady et al., "ClipCap: CLIP Prefix for Image Captioning", 2021,
https://arxiv.org/abs/2111.09734) as caption decoders, reimplemented from the published layout.

Two variants are understood, told apart by their keys:

* **MLP mapper, GPT-2 fine-tuned** (the public COCO and Conceptual Captions models): ``clip_project.model.0``
  (``clip_dim → prefix_length·E/2``), Tanh, ``clip_project.model.2`` (``→ prefix_length·E``), and the
  fine-tuned GPT-2 under ``gpt.*``. ``prefix_length`` is read from the shapes (10 for the public models).
* **Transformer mapper, GPT-2 frozen** (the public COCO transformer model): ``clip_project.linear``
  (``clip_dim → clip_length·E``), ``clip_project.prefix_const`` (``prefix_length × E``) and
  ``clip_project.transformer.layers.N.{norm1, attn.to_queries, attn.to_keys_values, attn.project,
  norm2, mlp.fc1, mlp.fc2}`` (8 heads, pre-norm, ReLU MLP, no bias on queries/keys/values); the
  prefix is the transformer's output at the ``prefix_const`` positions. GPT-2 comes from ``gpt=`` (a
  local directory or a hub name) unless the file holds ``gpt.*`` weights.

Checkpoints are read with ``torch.load(weights_only=True)`` (or safetensors); nothing is unpickled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .._exceptions import CheckpointFormatError, DataError
from .._io import load_state_dict_file
from .base import check_embeddings, check_space
from .generation import GenerationOptions, generate
from .tokenizer import TextTokenizer, clean_text

__all__ = ["ClipCapDecoder", "ClipCapTransformerMapper", "load_clipcap"]

_LAYER_PARTS = {
    "norm1.weight",
    "norm1.bias",
    "attn.to_queries.weight",
    "attn.to_keys_values.weight",
    "attn.project.weight",
    "attn.project.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
}


class _Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.to_queries = nn.Linear(dim, dim, bias=False)
        self.to_keys_values = nn.Linear(dim, 2 * dim, bias=False)
        self.project = nn.Linear(dim, dim)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class _Layers(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class _MapperLayer(nn.Module):
    """Pre-norm self-attention + ReLU MLP block with ClipCap's parameter names."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _FeedForward(dim, int(dim * mlp_ratio))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        q = self.attn.to_queries(x).view(b, n, h, c // h).transpose(1, 2)
        kv = self.attn.to_keys_values(x).view(b, n, 2, h, c // h)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.attn.project(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attention(self.norm1(x))
        return x + self.mlp.fc2(nn.functional.relu(self.mlp.fc1(self.norm2(x))))


class ClipCapTransformerMapper(nn.Module):
    """CLIP embedding → ``clip_length`` tokens (linear) + learned constants → transformer → the
    constants' outputs as the prefix."""

    def __init__(
        self, clip_dim: int, dim: int, prefix_length: int, clip_length: int, layers: int, heads: int = 8
    ):
        super().__init__()
        self.clip_length = clip_length
        self.linear = nn.Linear(clip_dim, clip_length * dim)
        self.prefix_const = nn.Parameter(torch.zeros(prefix_length, dim))
        self.transformer = _Layers([_MapperLayer(dim, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.linear(x).view(x.shape[0], self.clip_length, -1)
        h = torch.cat([tokens, self.prefix_const.expand(x.shape[0], -1, -1)], dim=1)
        for layer in self.transformer.layers:
            h = layer(h)
        return h[:, self.clip_length :]


class _MLPMapper(nn.Module):
    def __init__(self, clip_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(clip_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ClipCapDecoder(nn.Module):
    """A ClipCap model (mapper + GPT-2 + GPT-2 tokenizer) as a caption decoder.

    Build it with :func:`load_clipcap`. ``decode`` takes CLIP image embeddings of the CLIP model the
    checkpoint was trained on (or aligned features in that space); there is no text memory, so
    ``project`` is ignored.
    """

    def __init__(
        self,
        mapper: nn.Module,
        gpt: nn.Module,
        tokenizer: Any,
        *,
        variant: str,
        clip_dim: int,
        prefix_length: int,
        normalize: bool,
        stop_ids: list[int],
        space_identity: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.clip_project = mapper
        self.gpt = gpt
        self.tokenizer = tokenizer
        self.variant = variant
        self.embed_dim = int(clip_dim)
        self.prefix_length = int(prefix_length)
        self.normalize = normalize
        self.stop_ids = stop_ids
        self.space_identity: dict[str, Any] = dict(space_identity or {})

    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, prefix_length, E]`` GPT-2 input embeddings of CLIP embeddings."""
        x = nn.functional.normalize(embeddings, dim=-1) if self.normalize else embeddings
        return self.clip_project(x).view(x.shape[0], self.prefix_length, -1)

    @torch.no_grad()
    def decode(
        self, embeddings: Any, *, project: bool | None = None, batch_size: int = 32, **options: Any
    ) -> list[str]:
        """Captions of ``[N, clip_dim]`` CLIP embeddings (``options``: generation settings)."""
        return [text for text, _ in self.decode_scored(embeddings, batch_size=batch_size, **options)]

    @torch.no_grad()
    def decode_scored(
        self, embeddings: Any, *, batch_size: int = 32, **options: Any
    ) -> list[tuple[str, float]]:
        """Captions with their total log-probabilities."""
        x = check_embeddings(embeddings, self.embed_dim)
        opts = GenerationOptions(**options)
        device = next(self.gpt.parameters()).device
        self.eval()
        out = []
        for start in range(0, x.shape[0], batch_size):
            prefix = self.prefix(x[start : start + batch_size].to(device))
            for g in generate(self.gpt, prefix, stop_ids=self.stop_ids, options=opts):
                out.append((clean_text(self._decode_ids(g.ids)), g.log_prob))
        return out

    def _decode_ids(self, ids: list[int]) -> str:
        if isinstance(self.tokenizer, TextTokenizer):
            return self.tokenizer.decode(ids)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def check_space(self, space: Any = None, identity: dict[str, Any] | None = None) -> None:
        """Raise when the space's embedding size is not the checkpoint's CLIP width."""
        check_space(self, space, identity)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, clip_dim={self.embed_dim}, prefix_length={self.prefix_length}"


def _layer_indices(keys: list[str]) -> list[int]:
    found = {
        int(m.group(1)) for k in keys if (m := re.match(r"clip_project\.transformer\.layers\.(\d+)\.", k))
    }
    return sorted(found)


def _expected_keys(variant: str, n_layers: int) -> set[str]:
    if variant == "mlp":
        return {f"clip_project.model.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    keys = {"clip_project.linear.weight", "clip_project.linear.bias", "clip_project.prefix_const"}
    return keys | {f"clip_project.transformer.layers.{n}.{p}" for n in range(n_layers) for p in _LAYER_PARTS}


def _load_gpt(gpt: Any, state: dict[str, torch.Tensor], path: str) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    if isinstance(gpt, nn.Module):
        model = gpt
    elif gpt is not None:
        try:
            model = GPT2LMHeadModel.from_pretrained(str(gpt))
        except Exception as exc:
            raise CheckpointFormatError(
                f"could not load GPT-2 from {str(gpt)!r} ({type(exc).__name__}: {exc}). Pass gpt= a local "
                "directory saved with GPT2LMHeadModel.save_pretrained, or a hub name when online."
            ) from exc
    else:
        wte = state.get("gpt.transformer.wte.weight")
        if wte is None:
            raise CheckpointFormatError(
                f"{path!r} holds no GPT-2 weights (gpt.*) and no gpt= was given: this is a frozen-GPT-2 "
                "checkpoint; pass gpt='gpt2' (or a local directory of GPT-2 small)"
            )
        layers = _count(state, r"gpt\.transformer\.h\.(\d+)\.")
        n_pos = state["gpt.transformer.wpe.weight"].shape[0]
        dim = wte.shape[1]
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=wte.shape[0],
                n_positions=n_pos,
                n_embd=dim,
                n_layer=layers,
                n_head=max(1, dim // 64),
            )
        )
    gpt_state = {k.removeprefix("gpt."): v for k, v in state.items() if k.startswith("gpt.")}
    if gpt_state:
        result = model.load_state_dict(gpt_state, strict=False)
        missing = [
            k
            for k in result.missing_keys
            if k != "lm_head.weight" and not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")
        ]
        unexpected = [
            k for k in result.unexpected_keys if not k.endswith((".attn.bias", ".attn.masked_bias"))
        ]
        if missing or unexpected:
            raise CheckpointFormatError(
                f"the GPT-2 weights in {path!r} do not fit GPT-2 (missing {['gpt.' + k for k in missing]}, "
                f"unexpected {['gpt.' + k for k in unexpected]})"
            )
        cast(Any, model).tie_weights()
    return cast(nn.Module, model.eval())


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def _heads_for(dim: int, requested: int | None) -> int:
    heads = requested or 8
    if dim % heads:
        raise DataError(f"the mapper width {dim} is not divisible by {heads} heads; pass heads=")
    return heads


def load_clipcap(
    path: str | os.PathLike[str],
    *,
    gpt: Any = None,
    tokenizer: Any = None,
    space: Any = None,
    normalize: bool = False,
    clip_length: int | None = None,
    heads: int | None = None,
    stop_text: str | None = ".",
) -> ClipCapDecoder:
    """Load a ClipCap checkpoint (``.pt`` read with ``weights_only=True``, or ``.safetensors``).

    Args:
        path: the checkpoint file.
        gpt (str or nn.Module, optional): GPT-2 to use: a local directory or hub name for
            ``GPT2LMHeadModel.from_pretrained``, or a model. Needed when the file has no ``gpt.*``
            weights (the frozen-GPT-2 transformer variant); otherwise its ``gpt.*`` weights are used.
        tokenizer (optional): the GPT-2 BPE tokenizer: a Hugging Face tokenizer object, a local
            directory for ``GPT2TokenizerFast``, or a :class:`~t2c_captum.decoders.TextTokenizer`.
            Default: loaded from ``gpt`` when that is a directory or name
        space (Space, optional): checked to have the checkpoint's CLIP width; its identity is recorded.
        normalize (bool, optional): unit-normalise CLIP embeddings first (for models trained with
            ClipCap's ``--normalize_prefix``). Default: ``False``
        clip_length (int, optional): tokens of the transformer mapper's linear part. Default: read
            from the shapes assuming ``clip_length == prefix_length`` (true of the public model, 40)
        heads (int, optional): attention heads of the transformer mapper. Default: ``8``
        stop_text (str, optional): text whose token also ends a caption (ClipCap stops at "."), in
            addition to GPT-2's end-of-text. Default: ``"."``

    Raises:
        CheckpointFormatError: unexpected or missing keys (listed), or unreadable files.
    """
    path = str(path)
    state = load_state_dict_file(path)
    keys = sorted(state)
    own = [k for k in keys if not k.startswith("gpt.")]
    if "clip_project.model.0.weight" in state:
        variant = "mlp"
        n_layers = 0
    elif "clip_project.linear.weight" in state:
        variant = "transformer"
        n_layers = len(_layer_indices(own))
    else:
        raise CheckpointFormatError(
            f"{path!r} is not a ClipCap checkpoint: it has neither clip_project.model.0.weight (MLP mapper) "
            f"nor clip_project.linear.weight (transformer mapper). Keys: {own[:12]}"
        )
    expected = _expected_keys(variant, n_layers)
    unexpected = [k for k in own if k not in expected]
    missing = sorted(expected - set(own))
    if unexpected or missing:
        raise CheckpointFormatError(
            f"{path!r} does not have ClipCap's {variant}-mapper layout: unexpected keys {unexpected}, "
            f"missing keys {missing}. Only the public ClipCap layouts are understood."
        )
    model = _load_gpt(gpt, state, path)
    dim = int(cast(Any, model).get_input_embeddings().weight.shape[1])
    mapper: nn.Module
    if variant == "mlp":
        w0, w2 = state["clip_project.model.0.weight"], state["clip_project.model.2.weight"]
        clip_dim, out = int(w0.shape[1]), int(w2.shape[0])
        if out % dim:
            raise CheckpointFormatError(
                f"the MLP mapper's output ({out}) is not a multiple of GPT-2's width {dim}"
            )
        prefix_length = out // dim
        mapper = _MLPMapper(clip_dim, int(w0.shape[0]), out)
        mapper.load_state_dict({k.removeprefix("clip_project."): state[k] for k in expected})
    else:
        lin, const = state["clip_project.linear.weight"], state["clip_project.prefix_const"]
        clip_dim, prefix_length = int(lin.shape[1]), int(const.shape[0])
        if int(const.shape[1]) != dim:
            raise CheckpointFormatError(
                f"the mapper's width ({const.shape[1]}) is not GPT-2's ({dim}); "
                "pass the GPT-2 it was trained with"
            )
        length = clip_length or int(lin.shape[0]) // dim
        if length * dim != int(lin.shape[0]):
            raise CheckpointFormatError(
                f"clip_project.linear gives {lin.shape[0]} values, not clip_length·{dim}"
            )
        mapper = ClipCapTransformerMapper(
            clip_dim, dim, prefix_length, length, n_layers, _heads_for(dim, heads)
        )
        mapper.load_state_dict({k.removeprefix("clip_project."): state[k] for k in expected})
        model.requires_grad_(False)
    tok = _tokenizer(tokenizer, gpt)
    stops = _stop_ids(tok, model, stop_text)
    decoder = ClipCapDecoder(
        mapper,
        model,
        tok,
        variant=variant,
        clip_dim=clip_dim,
        prefix_length=prefix_length,
        normalize=normalize,
        stop_ids=stops,
        space_identity=dict(space.identity) if space is not None else None,
    ).eval()
    if space is not None:
        decoder.check_space(space)
    return decoder


def _tokenizer(tokenizer: Any, gpt: Any) -> Any:
    if tokenizer is None and isinstance(gpt, (str, Path)):
        tokenizer = gpt
    if tokenizer is None:
        raise DataError(
            "ClipCap decodes GPT-2 BPE tokens: pass tokenizer= (a local GPT-2 tokenizer directory)"
        )
    if isinstance(tokenizer, (str, Path)):
        from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]

        try:
            return GPT2TokenizerFast.from_pretrained(str(tokenizer))
        except Exception as exc:
            raise DataError(
                f"could not load a GPT-2 tokenizer from {str(tokenizer)!r} ({type(exc).__name__}: {exc}); "
                "pass a local directory saved with tokenizer.save_pretrained(DIR)"
            ) from exc
    return tokenizer


def _stop_ids(tok: Any, model: nn.Module, stop_text: str | None) -> list[int]:
    stops: list[int] = []
    eos = getattr(model.config, "eos_token_id", None)
    if isinstance(eos, int):
        stops.append(eos)
    if stop_text:
        ids = (
            tok.encode(stop_text)
            if isinstance(tok, TextTokenizer)
            else tok.encode(stop_text, add_special_tokens=False)
        )
        if ids:
            stops.append(int(ids[0]))
    if not stops:
        raise DataError("no stop token: give the GPT-2 config an eos_token_id or pass stop_text=")
    return list(dict.fromkeys(stops))
