"""Training the text-only prefix decoder: captions embedded by the space's own text encoder, a little
Gaussian noise on the embeddings (CapDec/DeCap), teacher-forced next-token loss, resumable checkpoints.

Checkpoints hold no pickle: ``checkpoint.safetensors`` has the model's tensors and the optimizer's
per-parameter state (``optim.{index}.{name}``), ``checkpoint.json`` the step, settings, optimizer
scalars and a digest of the corpus, so a resumed run continues exactly where the last checkpoint was.
Batches and noise of step ``s`` come from a generator seeded by ``(seed, s)``: a run interrupted and
resumed ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._exceptions import CheckpointFormatError, DataError, IncompatibleArtifactError
from .._io import atomic_write_json, atomic_write_tensors, load_state_dict_file, read_json
from .prefix import PrefixDecoder, PrefixDecoderConfig
from .tokenizer import CompactVocabulary, TextTokenizer, read_corpus

__all__ = ["TrainSettings", "corpus_digest", "train_prefix_decoder"]

CHECKPOINT = "checkpoint"


@dataclass
class TrainSettings:
    """Optimisation settings of :func:`train_prefix_decoder`.

    Args:
        steps (int): optimizer steps. Default: ``1500``
        batch_size (int): captions per step. Default: ``128``
        lr (float): peak AdamW learning rate (linear warm-up, cosine decay to 10%). Default: ``1e-3``
        weight_decay (float): AdamW weight decay. Default: ``0.01``
        noise_std (float): std of the Gaussian noise added to each unit text embedding (then
            renormalised). Default: ``0.08``
        seed (int): seed of the initial weights, batches and noise. Default: ``0``
        checkpoint_every (int): steps between checkpoints (with ``out``). Default: ``200``
        memory_size (int): most text embeddings kept as the decoder's memory. Default: ``20000``
    """

    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    noise_std: float = 0.08
    seed: int = 0
    checkpoint_every: int = 200
    memory_size: int = 20000

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise DataError("steps, batch_size and checkpoint_every must be >= 1")
        if self.lr <= 0 or self.noise_std < 0 or self.memory_size < 1:
            raise DataError("lr and memory_size must be > 0 and noise_std >= 0")


def corpus_digest(captions: list[str]) -> str:
    """First 16 hex digits of the SHA-256 of the captions (keys checkpoints and caches)."""
    return hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()[:16]


def _lr(step: int, settings: TrainSettings) -> float:
    warm = max(1, min(100, settings.steps // 10))
    if step < warm:
        return settings.lr * (step + 1) / warm
    t = (step - warm) / max(1, settings.steps - warm)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def _save_checkpoint(
    out: Path,
    decoder: PrefixDecoder,
    opt: torch.optim.Optimizer,
    step: int,
    run: dict[str, Any],
    losses: list[float],
) -> None:
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    tensors = {**decoder.state_tensors(), **opt_tensors}
    atomic_write_tensors(
        out / f"{CHECKPOINT}.safetensors", tensors, {"format": "t2c_captum.decoder-checkpoint"}
    )
    atomic_write_json(
        out / f"{CHECKPOINT}.json", {**run, "step": step, "optimizer": opt_meta, "losses": losses}
    )


def _run_record(
    config: PrefixDecoderConfig,
    settings: TrainSettings,
    tokenizer: TextTokenizer,
    space: Any,
    digest: str,
    n: int,
) -> dict[str, Any]:
    return {
        "config": asdict(config),
        "settings": asdict(settings),
        "tokenizer": tokenizer.describe(),
        "space": dict(space.identity),
        "corpus": {"digest": digest, "n_captions": n},
    }


def _check_resumable(saved: dict[str, Any], run: dict[str, Any], path: Path) -> None:
    problems = []
    for key in ("config", "tokenizer", "space", "corpus"):
        if json.loads(json.dumps(saved.get(key), default=str)) != json.loads(
            json.dumps(run[key], default=str)
        ):
            problems.append(f"{key}: checkpoint {saved.get(key)!r}, now {run[key]!r}")
    for key, value in run["settings"].items():
        if key not in ("steps", "checkpoint_every") and saved.get("settings", {}).get(key) != value:
            problems.append(
                f"settings.{key}: checkpoint {saved.get('settings', {}).get(key)!r}, now {value!r}"
            )
    if problems:
        raise IncompatibleArtifactError(
            f"cannot resume from {str(path)!r}, it belongs to a different run: "
            + "; ".join(problems)
            + ". Resume with the same space, corpus and settings, or start fresh "
            "(resume=False / no --resume)."
        )


def train_prefix_decoder(
    space: Any,
    corpus: Any,
    *,
    config: PrefixDecoderConfig | dict[str, Any] | None = None,
    settings: TrainSettings | dict[str, Any] | None = None,
    tokenizer: TextTokenizer | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> PrefixDecoder:
    """Train a :class:`PrefixDecoder` for ``space`` on captions alone.

    Args:
        space (Space): its ``encode_text`` embeds the captions; its identity is recorded.
        corpus: a list of captions or a ``.txt``/``.json``/``.csv`` file of them.
        config (PrefixDecoderConfig or dict, optional): model layout (``embed_dim`` comes from the
            space). Default: the :class:`PrefixDecoderConfig` defaults
        settings (TrainSettings or dict, optional): optimisation. Default: the defaults
        tokenizer (TextTokenizer, optional): base tokenizer. Default: CLIP BPE (offline)
        out (path, optional): folder for checkpoints (every ``checkpoint_every`` steps) and the final
            ``decoder.json`` + ``decoder.safetensors``.
        resume (bool, optional): continue from ``out/checkpoint.*`` when it exists. Default: ``False``
        progress (bool, optional): show a progress bar. Default: ``True``
        callback (callable, optional): ``callback(step, loss)`` after each step.
        device (str, optional): where to train. Default: CPU
        threads (int, optional): CPU threads while training (restored afterwards). Small decoders
            train fastest on one thread, and far faster than on several when the cores are shared.
            Default: leave torch's setting

    Returns:
        The trained decoder (in eval mode), with ``training_stats``.

    Raises:
        DataError: an empty corpus. IncompatibleArtifactError: ``resume`` from another run's checkpoint.
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _train(space, corpus, config, settings, tokenizer, out, resume, progress, callback, device)
    finally:
        torch.set_num_threads(before)


def _train(
    space: Any,
    corpus: Any,
    config: PrefixDecoderConfig | dict[str, Any] | None,
    settings: TrainSettings | dict[str, Any] | None,
    tokenizer: TextTokenizer | None,
    out: str | os.PathLike[str] | None,
    resume: bool,
    progress: bool,
    callback: Callable[[int, float], None] | None,
    device: str | None,
) -> PrefixDecoder:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    captions = read_corpus(corpus)
    settings = settings if isinstance(settings, TrainSettings) else TrainSettings(**(settings or {}))
    cfg_in = asdict(config) if isinstance(config, PrefixDecoderConfig) else dict(config or {})
    cfg_in["embed_dim"] = int(space.embed_dim)
    cfg = PrefixDecoderConfig.from_dict(cfg_in)
    tokenizer = tokenizer or TextTokenizer("clip")
    digest = corpus_digest(captions)
    run = _run_record(cfg, settings, tokenizer, space, digest, len(captions))
    out_dir = Path(out) if out is not None else None

    token_lists = [tokenizer.encode(c) for c in captions]
    vocabulary = CompactVocabulary.from_token_lists(token_lists)
    torch.manual_seed(settings.seed)
    decoder = PrefixDecoder(cfg, vocabulary, tokenizer, dict(space.identity))
    emb = space.encode_text(captions, normalize=True).float()
    if emb.shape[1] != cfg.embed_dim:
        raise DataError(
            f"the space's text embeddings are {emb.shape[1]}-d, not its embed_dim {cfg.embed_dim}"
        )
    seen: dict[str, int] = {}
    for i, c in enumerate(captions):
        seen.setdefault(c, i)
    unique = list(seen.values())
    if len(unique) > settings.memory_size:
        pick = torch.randperm(len(unique), generator=torch.Generator().manual_seed(settings.seed))
        unique = sorted(unique[i] for i in pick[: settings.memory_size].tolist())
    decoder.memory = emb[unique].clone()
    tokens = decoder.encode_captions(captions)

    dev = torch.device(device or "cpu")
    decoder.to(dev)
    params = [p for p in decoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    start, losses = 0, []
    if resume and out_dir is not None and (out_dir / f"{CHECKPOINT}.json").is_file():
        saved = read_json(out_dir / f"{CHECKPOINT}.json")
        _check_resumable(saved, run, out_dir / f"{CHECKPOINT}.json")
        tensors = load_state_dict_file(out_dir / f"{CHECKPOINT}.safetensors")
        decoder.load_tensors(
            {k: v for k, v in tensors.items() if not k.startswith("optim.")}, "the checkpoint"
        )
        decoder.to(dev)
        try:
            _restore_optimizer(opt, tensors, saved["optimizer"])
        except (KeyError, ValueError) as exc:
            raise CheckpointFormatError(
                f"the optimizer state in {str(out_dir)!r} is unreadable ({exc})"
            ) from exc
        start, losses = int(saved["step"]), list(saved.get("losses", []))
    steps = settings.steps
    decoder.train()
    bar = tqdm(total=steps, initial=min(start, steps), desc="decoder", disable=not progress, unit="step")
    emb_dev, tokens_dev = emb.to(dev), tokens.to(dev)
    try:
        for step in range(start, steps):
            gen = _step_generator(settings.seed, step)
            idx = torch.randint(0, len(captions), (min(settings.batch_size, len(captions)),), generator=gen)
            noise = torch.randn(len(idx), cfg.embed_dim, generator=gen) * settings.noise_std
            x = (
                nn.functional.normalize(emb[idx] + noise, dim=-1).to(dev)
                if settings.noise_std
                else emb_dev[idx.to(dev)]
            )
            for group in opt.param_groups:
                group["lr"] = _lr(step, settings)
            loss = decoder.loss(x, tokens_dev[idx.to(dev)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            value = float(loss.detach())
            losses.append(round(value, 5))
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
            done = step + 1
            if out_dir is not None and (done % settings.checkpoint_every == 0 or done == steps):
                _save_checkpoint(out_dir, decoder, opt, done, run, losses)
            if callback is not None:
                callback(done, value)
    finally:
        bar.close()
    decoder.eval().cpu()
    decoder.training_stats = {
        "n_captions": len(captions),
        "corpus_digest": digest,
        "memory_size": int(decoder.memory.shape[0]),
        "vocabulary_size": len(vocabulary),
        "settings": asdict(settings),
        "steps_done": len(losses),
        "first_loss": losses[0] if losses else None,
        "final_loss": float(sum(losses[-50:]) / max(1, len(losses[-50:]))) if losses else None,
        "seconds_this_run": round(time.perf_counter() - t0, 2),
    }
    if out_dir is not None:
        decoder.save(out_dir / "decoder")
    return decoder
