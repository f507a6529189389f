"""Small pure-torch models of the concept world: a tiny CLIP and two differently trained backbones.

Images are 3x64x64 tensors normalised by :func:`world_transform`. Nothing here depends on the rest
of the library; the tokenizer is open_clip's CLIP BPE tokenizer, which works offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import transforms

from .._exceptions import WorldError

__all__ = [
    "WORLD_MEAN",
    "WORLD_STD",
    "AutoEncoder",
    "ConvTrunk",
    "ShapeCNN",
    "TinyCLIP",
    "WorldViT",
    "clip_tokenize",
    "world_transform",
]

WORLD_MEAN = (0.5, 0.5, 0.5)
WORLD_STD = (0.25, 0.25, 0.25)
PAD_ID = 0


def world_transform(size: int = 64) -> transforms.Compose:
    """Preprocessing of every world model: Resize + CenterCrop to 64, ToTensor, Normalize."""
    return transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(WORLD_MEAN, WORLD_STD),
        ]
    )


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def clip_tokenize(texts: Sequence[str], context_length: int = 32) -> Tensor:
    """CLIP BPE token ids, shape ``[N, context_length]`` (0-padded, truncated with EOT kept)."""
    return _tokenizer()(list(texts), context_length=context_length)


def clip_special_ids() -> tuple[int, int]:
    """(start-of-text id, end-of-text id) of the CLIP tokenizer."""
    tok = _tokenizer()
    return tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


class ConvTrunk(nn.Module):
    """Stride-2 conv stages (each optionally followed by a stride-1 conv); 64x64 -> 4x4 maps.

    Args:
        widths: channels of the stages; each stage halves the resolution.
        extra: which stages get an additional stride-1 conv.
        stem: channels of a stride-1 conv at full resolution before the first stage (0: none);
            it sees fine textures (2-5 px object patterns) before any downsampling.
    """

    def __init__(
        self, widths: Sequence[int] = (32, 64, 128, 128), extra: Sequence[int] = (), stem: int = 0
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        if stem:
            layers.append(_conv_block(c_in, stem, stride=1))
            c_in = stem
        for i, width in enumerate(widths):
            layers.append(_conv_block(c_in, width, stride=2))
            if i in extra:
                layers.append(_conv_block(width, width, stride=1))
            c_in = width
        self.layers = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: Tensor) -> Tensor:
        """Feature maps ``[N, C, H/2^k, W/2^k]``."""
        return self.layers(x)


def _pool(maps: Tensor) -> Tensor:
    """Concatenated global average and max pooling."""
    return torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)


class ImageEncoder(nn.Module):
    """Conv trunk + avg/max pooling + linear projection to ``out_dim``."""

    def __init__(
        self, widths: Sequence[int], extra: Sequence[int], out_dim: int, stem: int = 0
    ) -> None:
        super().__init__()
        self.trunk = ConvTrunk(widths, extra, stem)
        self.proj = nn.Linear(2 * self.trunk.out_channels, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, out_dim]`` features."""
        return self.proj(_pool(self.trunk(x)))


class TextEncoder(nn.Module):
    """Small transformer over compact token indices, pooled at the end-of-text token."""

    def __init__(
        self, vocab_size: int, context_length: int, width: int, layers: int, heads: int
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.randn(context_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
            norm_first=True, activation="gelu",
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)

    def forward(self, tokens: Tensor, padding: Tensor, eot_index: Tensor) -> Tensor:
        """``[N, width]`` states at the EOT positions."""
        h = self.token_embedding(tokens) + self.position_embedding[: tokens.shape[1]]
        h = self.transformer(h, src_key_padding_mask=padding)
        h = self.final_norm(h)
        return h[torch.arange(h.shape[0], device=h.device), eot_index]


class TinyCLIP(nn.Module):
    """A tiny CLIP: conv image tower + transformer text tower in a shared embedding space.

    Args:
        vocab_ids: CLIP BPE ids the text tower knows (others map to one UNK row).
        embed_dim: shared embedding size.
        image_widths / image_extra / image_stem: conv trunk layout of the image tower.
        text_width / text_layers / text_heads: transformer layout of the text tower.
        context_length: tokens per text (longer texts are truncated).
    """

    vocab_ids: Tensor

    def __init__(
        self,
        vocab_ids: Sequence[int] | Tensor,
        embed_dim: int = 128,
        image_widths: Sequence[int] = (32, 64, 128, 192),
        image_extra: Sequence[int] = (1, 2),
        text_width: int = 128,
        text_layers: int = 3,
        text_heads: int = 4,
        context_length: int = 32,
        image_stem: int = 0,
    ) -> None:
        super().__init__()
        ids = torch.as_tensor(vocab_ids, dtype=torch.long).unique(sorted=True)
        self.register_buffer("vocab_ids", ids)
        self.context_length = context_length
        self.visual = ImageEncoder(image_widths, image_extra, embed_dim, image_stem)
        self.text = TextEncoder(len(ids) + 1, context_length, text_width, text_layers, text_heads)
        self.text_projection = nn.Linear(text_width, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07)
        self.hparams = {
            "vocab_size": len(ids), "embed_dim": embed_dim, "image_widths": list(image_widths),
            "image_extra": list(image_extra), "text_width": text_width,
            "text_layers": text_layers, "text_heads": text_heads,
            "context_length": context_length,
        }
        if image_stem:
            self.hparams["image_stem"] = image_stem

    @property
    def unk_index(self) -> int:
        """Compact index shared by every token id outside ``vocab_ids``."""
        return int(self.vocab_ids.numel())

    def compact_tokens(self, ids: Tensor) -> Tensor:
        """Map CLIP BPE ids to rows of the compact embedding table (unseen ids -> UNK)."""
        ids = ids.to(self.vocab_ids.device).contiguous()
        pos = torch.searchsorted(self.vocab_ids, ids).clamp(max=self.unk_index - 1)
        known = self.vocab_ids[pos] == ids
        return torch.where(known, pos, torch.full_like(pos, self.unk_index))

    def encode_image(self, images: Tensor) -> Tensor:
        """Image embeddings ``[N, D]`` (not normalised) of normalised 3x64x64 images."""
        return self.visual(images)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Text embeddings ``[N, D]`` (not normalised); tokenises on the model's device."""
        return self.encode_tokens(clip_tokenize(texts, self.context_length))

    def encode_tokens(self, ids: Tensor) -> Tensor:
        """Text embeddings ``[N, D]`` from CLIP BPE ids ``[N, L]``."""
        ids = ids.to(self.vocab_ids.device)
        _, eot = clip_special_ids()
        eot_index = (ids == eot).int().argmax(dim=1)
        states = self.text(self.compact_tokens(ids), ids == PAD_ID, eot_index)
        return self.text_projection(states)

    def forward(self, images: Tensor, texts: Sequence[str] | Tensor) -> Tensor:
        """Image-to-text logits ``[N_images, N_texts]`` (scaled cosine similarities)."""
        img = F.normalize(self.encode_image(images), dim=-1)
        txt = self.encode_tokens(texts) if isinstance(texts, Tensor) else self.encode_text(texts)
        txt = F.normalize(txt, dim=-1)
        return self.logit_scale.exp().clamp(max=100) * img @ txt.t()


class ShapeCNN(nn.Module):
    """A CNN trained supervised on the ``shape`` factor; ``head`` is its linear classifier.

    Args:
        num_classes: number of shape classes.
        widths / extra: conv trunk layout.
        feature_dim: size of the penultimate features.
    """

    def __init__(
        self,
        num_classes: int = 6,
        widths: Sequence[int] = (32, 64, 128, 128),
        extra: Sequence[int] = (2,),
        feature_dim: int = 128,
    ) -> None:
        super().__init__()
        self.encoder = ImageEncoder(widths, extra, feature_dim)
        self.activation = nn.ReLU(inplace=False)
        self.head = nn.Linear(feature_dim, num_classes)
        self.hparams = {
            "num_classes": num_classes, "widths": list(widths), "extra": list(extra),
            "feature_dim": feature_dim,
        }

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``[N, feature_dim]``."""
        return self.activation(self.encoder(x))

    def forward(self, x: Tensor) -> Tensor:
        """Shape logits ``[N, num_classes]``."""
        return self.head(self.features(x))


class WorldViT(nn.Module):
    """A small vision transformer trained supervised on every factor (one linear head each).

    ``patch_embed`` (a stride-``patch`` conv, or with ``stem`` a convolutional stem: 3x3 stride-2
    conv + batch-norm + GELU layers, then a conv of stride ``patch / 2**len(stem)``;
    ``[N, width, 64/patch, 64/patch]`` maps) and
    ``blocks.<i>`` (token sequences ``[N, 1 + patches, width]``, class token first) are the layers
    to hook; ``features`` is the final-norm class token. ``head`` is the shape classifier (like
    ShapeCNN's), ``heads[factor]`` the classifier of every other factor.

    Args:
        num_classes: classes per factor (``{factor: n}``; must include ``shape``).
        patch: patch side in pixels.
        width / depth / heads_per_block: transformer layout.
        stem: channels of the stem's stride-2 conv layers (empty: a plain patchify conv). A conv
            stem lets a small ViT see shapes inside its patches (Xiao et al., 2021).
    """

    def __init__(
        self,
        num_classes: dict[str, int] | None = None,
        patch: int = 8,
        width: int = 96,
        depth: int = 4,
        heads_per_block: int = 4,
        stem: Sequence[int] = (),
    ) -> None:
        super().__init__()
        num_classes = dict(num_classes or {"shape": 6})
        grid = 64 // patch
        self.patch_embed: nn.Module
        stride = patch // 2 ** len(stem)
        if stride < 1 or stride * 2 ** len(stem) != patch:
            raise WorldError(f"patch {patch} is not 2**len(stem) = {2 ** len(stem)} times a whole stride")
        layers: list[nn.Module] = []
        channels = 3
        for out in stem:
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.GELU()]
            channels = out
        layers.append(nn.Conv2d(channels, width, stride, stride=stride))
        self.patch_embed = nn.Sequential(*layers) if stem else layers[0]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads_per_block, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                norm_first=True, activation="gelu",
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes["shape"])
        self.heads = nn.ModuleDict(
            {f: nn.Linear(width, n) for f, n in num_classes.items() if f != "shape"}
        )
        self.hparams = {"num_classes": num_classes, "patch": patch, "width": width,
                        "depth": depth, "heads_per_block": heads_per_block, "stem": list(stem)}

    def features(self, x: Tensor) -> Tensor:
        """Class-token features ``[N, width]``."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            h = block(h)
        return self.norm(h[:, 0])

    def factor_logits(self, x: Tensor) -> dict[str, Tensor]:
        """Logits of every factor's head."""
        f = self.features(x)
        return {"shape": self.head(f), **{name: head(f) for name, head in self.heads.items()}}

    def forward(self, x: Tensor) -> Tensor:
        """Shape logits ``[N, num_classes["shape"]]``."""
        return self.head(self.features(x))


class AutoEncoder(nn.Module):
    """Conv autoencoder trained only on reconstruction; ``features`` is its latent vector.

    The latent has a spatial part (a linear map of the flattened feature grid: where things are)
    and, with ``pooled_dim > 0``, a pooled part (a linear map of the grid's max- and mean-pooled
    channels: what is there, wherever it is). Both feed the decoder.

    Args:
        latent_dim: size of the latent vector (both parts).
        widths: channels of the encoder stages (the decoder mirrors them).
        pooled_dim: size of the pooled part (0: spatial only).
    """

    def __init__(
        self, latent_dim: int = 128, widths: Sequence[int] = (32, 64, 128, 128), pooled_dim: int = 0
    ) -> None:
        super().__init__()
        if not 0 <= pooled_dim < latent_dim:
            raise WorldError("pooled_dim must be in [0, latent_dim)")
        self.trunk = ConvTrunk(widths)
        self.grid = 64 // 2 ** len(widths)
        flat = widths[-1] * self.grid**2
        self.pooled_dim = pooled_dim
        self.to_latent = nn.Linear(flat, latent_dim - pooled_dim)
        self.to_pooled = nn.Linear(2 * widths[-1], pooled_dim) if pooled_dim else None
        self.from_latent = nn.Linear(latent_dim, flat)
        ups: list[nn.Module] = []
        chans = [*reversed(widths), 16]
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            ups += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU(inplace=False)]
        ups.append(nn.Conv2d(16, 3, 3, padding=1))
        self.decoder = nn.Sequential(*ups)
        self.hparams = {"latent_dim": latent_dim, "widths": list(widths), "pooled_dim": pooled_dim}

    def features(self, x: Tensor) -> Tensor:
        """Latent vectors ``[N, latent_dim]``."""
        maps = self.trunk(x)
        spatial = self.to_latent(maps.flatten(1))
        if self.to_pooled is None:
            return spatial
        pooled = torch.cat([maps.amax(dim=(2, 3)), maps.mean(dim=(2, 3))], dim=1)
        return torch.cat([spatial, self.to_pooled(pooled)], dim=1)

    def decode(self, latent: Tensor) -> Tensor:
        """Reconstructed normalised images ``[N, 3, 64, 64]``."""
        maps = self.from_latent(latent).view(latent.shape[0], -1, self.grid, self.grid)
        return self.decoder(F.relu(maps))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x``."""
        return self.decode(self.features(x))
