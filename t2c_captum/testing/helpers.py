"""Helpers for tests, including plugin authors' tests: tiny seeded models, fake parts, images
(re-exported by ``t2c_captum.testing``).

Everything here works offline: models are random-init (seeded) or built from the concept world.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..aligners import Aligner
from ..backbones import Backbone
from ..hookspecs import hookimpl
from ..spaces import Space

__all__ = [
    "TINY_CLIP",
    "FakeBackbone",
    "FakePairPlugin",
    "FakeSpace",
    "check_aligner",
    "float32_tolerance",
    "make_images",
    "make_world_jpegs",
    "register_tiny_clip_config",
    "tiny_open_clip_checkpoint",
]

TINY_CLIP = "t2c-tiny-clip"


def register_tiny_clip_config() -> str:
    """Make open_clip know the tiny architecture ``t2c-tiny-clip`` (16-d, 32×32 ViT); returns its name."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(Path(__file__).with_name(f"{TINY_CLIP}.json"))
    return TINY_CLIP


def tiny_open_clip_checkpoint(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Create a seeded random-init tiny open_clip model and save its weights (safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    register_tiny_clip_config()
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    path = Path(path)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def float32_tolerance(terms: int, magnitude: float = 1.0, safety: float = 2.0) -> dict[str, float]:
    """``rtol``/``atol`` for comparing two float32 computations of the same sums in another order
    (other batch sizes, row splits, chunks, thread counts or CPU kernels), for
    ``torch.testing.assert_close(a, b, **float32_tolerance(k, m))``.

    Each result is a sum of ``terms`` products; summed in any order in float32 its error is at most
    ``γ_k · Σ|products|`` with ``γ_k = k·u / (1 - k·u)`` and ``u = 2⁻²⁴`` (Higham, *Accuracy and
    Stability of Numerical Algorithms*, §3.1), so two orders differ by at most twice that.
    ``magnitude`` is (a bound on) ``Σ|products|`` for the largest result; ``safety`` covers a
    further layer or normalisation. A wrong row, a missing shard or a scale error exceeds it by
    orders of magnitude.
    """
    u = 2.0**-24
    gamma = terms * u / (1 - terms * u)
    bound = safety * 2 * gamma
    return {"rtol": bound, "atol": bound * magnitude}


def make_images(
    folder: str | os.PathLike[str],
    n: int = 8,
    size: int = 32,
    classes: Sequence[str] | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write ``n`` random PNGs (into one sub-folder per class when ``classes`` is given)."""
    rng = np.random.default_rng(seed)
    root = Path(folder)
    paths = []
    for i in range(n):
        sub = root / classes[i % len(classes)] if classes else root
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        path = sub / f"img_{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def make_world_jpegs(
    folder: str | os.PathLike[str], n: int, size: int = 64, split: str = "train", quality: int = 92
) -> list[Any]:
    """Write the first ``n`` concept-world images of ``split`` as ``size`` px JPEGs (bicubic
    resize from the world's 64 px; the world models resize them back). Returns their samples, in
    file-name order (their factors are the ground truth)."""
    from ..world.generator import make_split, render

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    samples = make_split(split, n)
    for i, sample in enumerate(samples):
        image = render(sample).resize((size, size), Image.Resampling.BICUBIC)
        image.save(root / f"img{i:05d}.jpg", quality=quality)
    return samples


def _to_tensor(image: Any, size: int) -> torch.Tensor:
    from torchvision.transforms.functional import pil_to_tensor, resize

    return resize(pil_to_tensor(image), [size, size], antialias=True).float() / 255.0


class _Preprocess:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Any) -> torch.Tensor:
        return _to_tensor(image, self.size)

    def __repr__(self) -> str:
        return f"FakePreprocess(size={self.size})"


class FakeBackbone(Backbone):
    """A seeded random linear map of 8×8 thumbnails: ``dim``-d features, optional head."""

    def __init__(self, dim: int = 12, n_classes: int = 0, seed: int = 0, name: str = "fake") -> None:
        gen = torch.Generator().manual_seed(seed)
        head = None
        if n_classes:
            with torch.random.fork_rng(devices=[]):  # seeded too: never depends on what ran before
                torch.manual_seed(seed)
                head = nn.Linear(dim, n_classes)
        super().__init__(name, _Preprocess(8), head=head, input_size=(3, 8, 8))
        self.proj = nn.Linear(3 * 8 * 8, dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 192, generator=gen) / 8)
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1))


class FakeSpace(Space):
    """A seeded random text-image space: images via a linear map, texts via hashed bag-of-characters."""

    def __init__(self, dim: int = 6, seed: int = 1, name: str = "fake-space") -> None:
        super().__init__(name, _Preprocess(8), dim, templates=["a photo of {}."], input_size=(3, 8, 8))
        gen = torch.Generator().manual_seed(seed)
        self.image_proj = nn.Linear(192, dim)
        self.text_table = nn.Parameter(torch.randn(256, dim, generator=gen), requires_grad=False)
        with torch.no_grad():
            self.image_proj.weight.copy_(torch.randn(dim, 192, generator=gen) / 8)
            self.image_proj.bias.zero_()  # seeded entirely: two spaces of one seed are the same model

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_proj(images.flatten(1))

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        rows = [self.text_table[torch.tensor([ord(c) % 256 for c in t] or [0])].mean(0) for t in texts]
        return torch.stack(rows)


class FakePairPlugin:
    """A plugin that registers a :class:`FakeBackbone` and a :class:`FakeSpace` by name, so a test can
    run ``t2c`` commands on them (``with temporary_plugin(FakePairPlugin("my-bb", "my-space"), "x"):``).

    Args:
        backbone (str): the backbone's registered name (also its ``name``).
        space (str): the space's registered name (also its ``name``).
        dim (int, optional): backbone feature size. Default: ``10``
        space_dim (int, optional): space embedding size. Default: ``6``
    """

    def __init__(self, backbone: str, space: str, dim: int = 10, space_dim: int = 6) -> None:
        self.backbone, self.space, self.dim, self.space_dim = backbone, space, dim, space_dim

    @hookimpl
    def register_backbones(self, register: Any) -> None:
        register(self.backbone, lambda **_: FakeBackbone(dim=self.dim, name=self.backbone))

    @hookimpl
    def register_spaces(self, register: Any) -> None:
        register(self.space, lambda **_: FakeSpace(dim=self.space_dim, name=self.space))


def check_aligner(
    aligner: Aligner, d: int = 16, D: int = 8, n: int = 600, seed: int = 0, orthogonal: bool = False
) -> None:
    """Assert the basic contract of an aligner kind on synthetic linear data (for plugin authors).

    Checks: ``fit`` returns self and recovers a noiseless linear map (R² > 0.9 on new rows; with
    ``orthogonal=True`` the true map is a scaled semi-orthogonal one, for constrained kinds);
    ``transform`` is differentiable; unfitted use and wrong dimensions raise clear errors.
    """
    from .._exceptions import DimensionMismatchError, NotFittedError

    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d, D, generator=gen)
    if orthogonal:
        W = 2.0 * torch.linalg.svd(W, full_matrices=False)[0] @ torch.eye(D)
    X = torch.randn(n, d, generator=gen)
    Y = X @ W + 0.5
    try:
        aligner.transform(X[:2])
        raise AssertionError("an unfitted aligner must raise NotFittedError")
    except NotFittedError:
        pass
    assert aligner.fit(X, Y) is aligner, "fit must return self"
    X_new = torch.randn(200, d, generator=gen)
    r2 = aligner.score(X_new, X_new @ W + 0.5)
    assert r2 > 0.9, f"held-out R² {r2:.3f} on a noiseless linear map"
    x = X_new[:3].clone().requires_grad_(True)
    aligner(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), "gradients must flow to the input"
    try:
        aligner.transform(torch.randn(2, d + 1))
        raise AssertionError("wrong input dimension must raise DimensionMismatchError")
    except DimensionMismatchError:
        pass
