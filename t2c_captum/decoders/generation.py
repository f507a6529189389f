"""Token generation after a prefix of embeddings: greedy, beam search and nucleus sampling, in batches.

A compact loop over any causal language model that accepts ``inputs_embeds`` (``GPT2LMHeadModel``):
every row of a batch has the same length and finished rows keep emitting their stop token, so no
attention mask is needed. The model's key/value cache is used (``use_cache=True``, the default): the
prefix is run once and each step feeds only the new token; beam search reorders the cache by the
chosen beams. ``use_cache=False`` recomputes the whole sequence each step (same captions; the reference
the tests compare against). A model that returns no cache is run the uncached way.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .._exceptions import DataError

__all__ = ["STRATEGIES", "GenerationOptions", "Generated", "generate"]

STRATEGIES = ("greedy", "beam", "nucleus")


@dataclass(frozen=True)
class GenerationOptions:
    """How to pick tokens.

    Args:
        strategy (str): ``"greedy"``, ``"beam"`` or ``"nucleus"``. Default: ``"greedy"``
        beam_size (int): beams per input (``beam``). Default: ``4``
        top_p (float): nucleus mass kept (``nucleus``). Default: ``0.9``
        temperature (float): softmax temperature of sampling. Default: ``1.0``
        seed (int, optional): seed of sampling; the same seed gives the same captions. Default: ``0``
        max_new_tokens (int): longest caption in tokens. Default: ``32``
        length_penalty (float): beam hypotheses are ranked by ``log p / length ** length_penalty``
            (``0``: the total log-probability). Default: ``1.0``
        use_cache (bool): reuse the model's key/value cache, feeding one new token a step (``False``:
            recompute the whole sequence each step; same captions, slower). Default: ``True``
    """

    strategy: str = "greedy"
    beam_size: int = 4
    top_p: float = 0.9
    temperature: float = 1.0
    seed: int | None = 0
    max_new_tokens: int = 32
    length_penalty: float = 1.0
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise DataError(
                f"unknown decoding strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        if self.beam_size < 1:
            raise DataError(f"beam_size must be >= 1, got {self.beam_size}")
        if not 0 < self.top_p <= 1:
            raise DataError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise DataError(f"temperature must be > 0, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise DataError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Generated:
    """One generated sequence: its token ids (stop token removed) and total log-probability."""

    ids: list[int]
    log_prob: float


def _cache_argument(lm: nn.Module) -> str | None:
    """Name of the forward argument that takes the key/value cache (``cache`` in transformers >= 5.x,
    ``past_key_values`` before), or ``None`` when the model takes none."""
    try:
        params = inspect.signature(cast(Any, lm).forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


class _Stepper:
    """Next-token log-probabilities of a batch of growing sequences, with or without the model's
    key/value cache: :meth:`logprobs` of the last position, :meth:`append` one token per row,
    :meth:`select` rows (beam search)."""

    def __init__(
        self, lm: nn.Module, embed: nn.Module, x: torch.Tensor, banned: Sequence[int], use_cache: bool
    ):
        self.lm, self.embed, self.banned = lm, embed, list(banned)
        name = _cache_argument(lm)
        self.takes_cache = name is not None
        self.arg = name if use_cache else None
        self.x = x  # the whole sequence (uncached), or the tokens the cache has not seen yet
        self.cache: Any = None

    def logprobs(self) -> torch.Tensor:
        if self.arg is None:
            kwargs = {"use_cache": False} if self.takes_cache else {}
            logits = self.lm(inputs_embeds=self.x, **kwargs).logits[:, -1]
        else:
            past = {self.arg: self.cache} if self.cache is not None else {}
            out = self.lm(inputs_embeds=self.x, use_cache=True, **past)
            cache = getattr(out, "cache", None)
            self.cache = cache if cache is not None else getattr(out, "past_key_values", None)
            if self.cache is None:  # the model keeps no cache: recompute from now on
                self.arg = None
            else:
                self.x = self.x[:, :0]
            logits = out.logits[:, -1]
        logits = logits.float()
        if self.banned:
            logits[:, self.banned] = float("-inf")
        return torch.log_softmax(logits, dim=-1)

    def append(self, tokens: torch.Tensor) -> None:
        self.x = torch.cat([self.x, self.embed(tokens[:, None]).to(self.x.dtype)], dim=1)

    def select(self, rows: torch.Tensor) -> None:
        self.x = self.x[rows]
        if self.cache is None:
            return
        if hasattr(self.cache, "reorder_cache"):
            self.cache.reorder_cache(rows)
        else:  # legacy tuple of per-layer (key, value) tensors
            self.cache = tuple(tuple(t.index_select(0, rows) for t in layer) for layer in self.cache)


def _trim(ids: list[int], stop: set[int]) -> list[int]:
    for n, i in enumerate(ids):
        if i in stop:
            return ids[:n]
    return ids


@torch.no_grad()
def generate(
    lm: nn.Module,
    prefix: torch.Tensor,
    *,
    stop_ids: Sequence[int],
    start_ids: Sequence[int] = (),
    banned_ids: Sequence[int] = (),
    options: GenerationOptions | None = None,
) -> list[Generated]:
    """Continue each row of ``prefix`` (``[B, P, H]`` input embeddings) with tokens.

    Args:
        lm (nn.Module): a causal LM taking ``inputs_embeds`` and returning ``.logits``, with
            ``get_input_embeddings()``.
        prefix (Tensor): ``[B, P, H]`` embeddings the text continues.
        stop_ids (list of int): tokens that end a caption (the first is used as filler).
        start_ids (list of int, optional): tokens fed after the prefix before generating.
        banned_ids (list of int, optional): tokens never generated (padding, start).
        options (GenerationOptions, optional): strategy and its settings.

    Returns:
        One :class:`Generated` per row, in order.
    """
    opts = options or GenerationOptions()
    if not stop_ids:
        raise DataError("generation needs at least one stop token id")
    embed = cast(nn.Module, cast(Any, lm).get_input_embeddings())
    device = prefix.device
    x = prefix
    if start_ids:
        start = torch.as_tensor(list(start_ids), device=device).expand(prefix.shape[0], -1)
        x = torch.cat([x, embed(start).to(x.dtype)], dim=1)
    if opts.strategy == "beam" and opts.beam_size > 1:
        return _beam(lm, embed, x, stop_ids, banned_ids, opts)
    return _sample_or_greedy(lm, embed, x, stop_ids, banned_ids, opts)


def _sample_or_greedy(
    lm: nn.Module,
    embed: nn.Module,
    x: torch.Tensor,
    stop_ids: Sequence[int],
    banned: Sequence[int],
    opts: GenerationOptions,
) -> list[Generated]:
    batch, device = x.shape[0], x.device
    stop = torch.as_tensor(list(stop_ids), device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    score = torch.zeros(batch, dtype=torch.float64, device=device)
    tokens: list[torch.Tensor] = []
    gen = None
    if opts.strategy == "nucleus":
        gen = torch.Generator(device="cpu").manual_seed(int(opts.seed or 0))
    steps = _Stepper(lm, embed, x, banned, opts.use_cache)
    for _ in range(opts.max_new_tokens):
        logp = steps.logprobs()
        nxt = _nucleus(logp, opts, gen).to(device) if gen is not None else logp.argmax(dim=-1)
        nxt = torch.where(done, stop[0].expand_as(nxt), nxt)
        score += torch.where(done, torch.zeros_like(score), logp.gather(1, nxt[:, None])[:, 0].double())
        tokens.append(nxt)
        done |= torch.isin(nxt, stop)
        if bool(done.all()):
            break
        steps.append(nxt)
    ids = torch.stack(tokens, dim=1).tolist()
    stops = set(int(s) for s in stop_ids)
    return [Generated(_trim(row, stops), float(s)) for row, s in zip(ids, score.tolist(), strict=True)]


def _nucleus(logp: torch.Tensor, opts: GenerationOptions, gen: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(logp / opts.temperature, dim=-1).cpu()
    sorted_p, order = probs.sort(dim=-1, descending=True)
    keep = (sorted_p.cumsum(dim=-1) - sorted_p) < opts.top_p
    keep[:, 0] = True
    sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
    pick = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=gen)
    return order.gather(1, pick)[:, 0]


def _beam(
    lm: nn.Module,
    embed: nn.Module,
    x: torch.Tensor,
    stop_ids: Sequence[int],
    banned: Sequence[int],
    opts: GenerationOptions,
) -> list[Generated]:
    batch, k, device = x.shape[0], opts.beam_size, x.device
    fill = int(stop_ids[0])
    stop = torch.as_tensor(list(stop_ids), device=device)
    x = x.repeat_interleave(k, dim=0)
    score = torch.zeros(batch, k, dtype=torch.float64, device=device)
    score[:, 1:] = float("-inf")  # the first step expands one beam only
    length = torch.zeros(batch, k, device=device)
    done = torch.zeros(batch, k, dtype=torch.bool, device=device)
    seqs = torch.zeros(batch, k, 0, dtype=torch.long, device=device)
    steps = _Stepper(lm, embed, x, banned, opts.use_cache)
    for _ in range(opts.max_new_tokens):
        logp = steps.logprobs().double().view(batch, k, -1)
        vocab = logp.shape[-1]
        finished = torch.full_like(logp, float("-inf"))
        finished[..., fill] = 0.0
        logp = torch.where(done[..., None], finished, logp)
        cand = (score[..., None] + logp).view(batch, -1)
        score, flat = cand.topk(k, dim=-1)
        beam, token = flat // vocab, flat % vocab
        length = length.gather(1, beam) + (~done.gather(1, beam)).float()
        done = done.gather(1, beam) | torch.isin(token, stop)
        seqs = torch.cat(
            [seqs.gather(1, beam[..., None].expand(-1, -1, seqs.shape[-1])), token[..., None]], -1
        )
        rows = (beam + torch.arange(batch, device=device)[:, None] * k).view(-1)
        if bool(done.all()):
            break
        steps.select(rows)
        steps.append(token.view(-1))
    ranked = score / length.clamp_min(1) ** opts.length_penalty
    best = ranked.argmax(dim=1)
    stops = set(int(s) for s in stop_ids)
    out = []
    for b in range(batch):
        j = int(best[b])
        out.append(Generated(_trim(seqs[b, j].tolist(), stops), float(score[b, j])))
    return out
