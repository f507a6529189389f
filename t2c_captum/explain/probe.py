"""ConceptProbe: images → backbone → aligner → cosine with named concepts, as one ``nn.Module`` that any
``captum.attr`` method can explain; plus the pixel-map convenience around it."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._exceptions import ConfigurationError, DataError, DimensionMismatchError, UnknownNameError
from ..concepts import ConceptBank

__all__ = ["ConceptMaps", "ConceptProbe", "PIXEL_METHODS", "inplace_modules", "without_inplace"]


def inplace_modules(model: nn.Module) -> list[str]:
    """Names of modules that run in place (``inplace=True``), which some Captum methods reject."""
    return [name for name, m in model.named_modules() if getattr(m, "inplace", False) is True]


def without_inplace(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``inplace=True`` flag turned off (the original is untouched)."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # type: ignore[assignment]
    return clone


def _prepare_backbone(backbone: nn.Module, inplace: str) -> nn.Module:
    found = inplace_modules(backbone)
    if not found or inplace == "keep":
        return backbone
    if inplace == "copy":
        return without_inplace(backbone)
    if inplace == "error":
        raise ConfigurationError(
            f"the backbone runs {len(found)} module(s) in place ({', '.join(found[:4])}...), which "
            "Captum's DeepLift / LRP / layer methods reject; use inplace='copy' (a copy with in-place "
            "ops turned off) or t2c_captum.explain.without_inplace(model)"
        )
    raise DataError(f"inplace must be 'copy', 'error' or 'keep', not {inplace!r}")


class ConceptProbe(nn.Module):
    """``x → cos(aligner(backbone(x)), t_k)`` for the chosen concepts: a forward function for Captum.

    The output is ``[N, K]``; pass ``target=probe.target(concept)`` (or the concept's column index)
    to any ``captum.attr`` method. The aligned features go through an ``nn.Identity`` named
    ``features``, so layer methods can hook the aligned layer itself.

    Args:
        backbone (Backbone or nn.Module): images → features ``[N, d]``; without an aligner it must
            already give space embeddings (e.g. a CLIP image encoder).
        aligner (Aligner, optional): features → space. Default: ``None``
        bank (ConceptBank): the concepts' text embeddings.
        concepts (list of str, optional): the columns (default: every concept of the bank).
        inplace (str, optional): ``"copy"`` (default) explains a copy of the backbone with in-place
            ops turned off, ``"error"`` raises if there are any, ``"keep"`` leaves them.

    Examples::

        >>> probe = ConceptProbe(backbone, aligner, bank, ["red", "striped"])
        >>> IntegratedGradients(probe).attribute(images, target=probe.target("red"))
    """

    concept_embeddings: torch.Tensor

    def __init__(
        self,
        backbone: nn.Module,
        aligner: nn.Module | None,
        bank: ConceptBank,
        concepts: Sequence[str] | None = None,
        *,
        inplace: str = "copy",
    ) -> None:
        super().__init__()
        self.backbone = _prepare_backbone(backbone, inplace)
        self.features = nn.Identity()
        self.aligner = aligner
        names = list(concepts) if concepts is not None else list(bank.concepts)
        self.concepts = names
        self.register_buffer("concept_embeddings", bank.embeddings[bank.indices(names)].clone())
        bank.check_aligner(aligner)

    def target(self, concept: str | int) -> int:
        """Output column of a concept (by name or index)."""
        if isinstance(concept, int):
            if not 0 <= concept < len(self.concepts):
                raise DataError(f"concept index {concept} is outside 0..{len(self.concepts) - 1}")
            return concept
        if concept not in self.concepts:
            raise UnknownNameError("concept", concept, self.concepts, "Build the probe with it.")
        return self.concepts.index(concept)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Aligned features ``[N, D]`` (differentiable)."""
        z = self.features(self.backbone(x))
        if self.aligner is not None:
            z = self.aligner(z)
        if z.shape[-1] != self.concept_embeddings.shape[1]:
            raise DimensionMismatchError(
                f"the probe's features are {z.shape[-1]}-d but the concepts are "
                f"{self.concept_embeddings.shape[1]}-d; give the aligner that maps this backbone into "
                "the space"
            )
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cosines ``[N, K]`` with the concepts."""
        z = nn.functional.normalize(self.embed(x), dim=-1)
        return z @ self.concept_embeddings.to(z.dtype).T


PIXEL_METHODS = (
    "integrated_gradients", "saliency", "noise_tunnel", "occlusion", "input_x_gradient", "gradcam"
)


@dataclass
class ConceptMaps:
    """Attribution maps of one concept: ``maps [N, H, W]`` (non-negative, per image) and the raw
    Captum output ``raw [N, C, H, W]``."""

    concept: str
    method: str
    maps: torch.Tensor
    raw: torch.Tensor

    def mass_inside(self, masks: torch.Tensor | Any) -> torch.Tensor:
        """Share of each map's total inside a boolean mask ``[N, H, W]`` (e.g. the object)."""
        m = torch.as_tensor(masks, dtype=torch.bool)
        total = self.maps.flatten(1).sum(1).clamp_min(1e-12)
        return (self.maps * m).flatten(1).sum(1) / total

    def pointing_game(self, masks: torch.Tensor | Any, tolerance: int = 0) -> torch.Tensor:
        """Whether each map's maximum falls inside the mask (grown by ``tolerance`` pixels)."""
        m = torch.as_tensor(masks, dtype=torch.bool).float()
        if tolerance:
            m = nn.functional.max_pool2d(m[:, None], 2 * tolerance + 1, 1, tolerance)[:, 0]
        flat = self.maps.flatten(1).argmax(1)
        return m.flatten(1).gather(1, flat[:, None])[:, 0].bool()

    def overlay(self, images: torch.Tensor | Sequence[Any], path: str | None = None, cols: int = 8) -> Any:
        """A matplotlib figure: each image with its map on top (saved to ``path`` if given)."""
        from .figures import overlay_figure

        return overlay_figure(images, self.maps, f"{self.concept} ({self.method})", path, cols)


def _captum_method(probe: ConceptProbe, method: str, layer: nn.Module | None) -> Any:
    from captum import attr

    if method == "integrated_gradients":
        return attr.IntegratedGradients(probe)
    if method == "saliency":
        return attr.Saliency(probe)
    if method == "noise_tunnel":
        return attr.NoiseTunnel(attr.IntegratedGradients(probe))
    if method == "occlusion":
        return attr.Occlusion(probe)
    if method == "input_x_gradient":
        return attr.InputXGradient(probe)
    if method == "gradcam":
        if layer is None:
            raise DataError("gradcam needs layer= a conv module of the backbone (e.g. its last conv block)")
        return attr.LayerGradCam(probe, layer)
    raise UnknownNameError("attribution method", method, PIXEL_METHODS)


def attribute_concept(
    probe: ConceptProbe,
    images: torch.Tensor,
    concept: str,
    method: str = "integrated_gradients",
    *,
    layer: nn.Module | None = None,
    **kwargs: Any,
) -> ConceptMaps:
    """Pixel attribution of one named concept for a batch of preprocessed images.

    Args:
        probe (ConceptProbe): the model to explain.
        images (Tensor): ``[N, 3, H, W]`` preprocessed images.
        concept (str): a concept of the probe.
        method (str, optional): one of :data:`PIXEL_METHODS`. Default: ``"integrated_gradients"``
        layer (nn.Module, optional): the conv layer for ``"gradcam"``.
        **kwargs: passed to Captum's ``attribute`` (e.g. ``baselines``, ``n_steps``,
            ``sliding_window_shapes`` for occlusion, ``nt_samples`` for the noise tunnel).

    Returns:
        ConceptMaps: non-negative ``[N, H, W]`` maps (absolute values summed over channels; Grad-CAM
        is upsampled to the image size and clipped at 0).
    """
    from captum.attr import LayerAttribution

    target = probe.target(concept)
    explainer = _captum_method(probe, method, layer)
    if method == "occlusion":
        kwargs.setdefault("sliding_window_shapes", (3, 8, 8))
        kwargs.setdefault("strides", (3, 4, 4))
    if method == "noise_tunnel":
        kwargs.setdefault("nt_samples", 8)
        kwargs.setdefault("nt_type", "smoothgrad")
    if method in ("integrated_gradients", "noise_tunnel"):
        kwargs.setdefault("n_steps", 32)
    x = images.detach().clone().requires_grad_(method != "occlusion")
    raw = explainer.attribute(x, target=target, **kwargs)
    if method == "gradcam":
        up = LayerAttribution.interpolate(raw, tuple(images.shape[-2:]), "bilinear")
        maps = up.clamp_min(0).sum(1)
    else:
        maps = raw.abs().sum(1)
    return ConceptMaps(concept, method, maps.detach(), raw.detach())
