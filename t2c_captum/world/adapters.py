"""The concept world's models seen through the library's interfaces: a Space and Backbones."""

from __future__ import annotations

from typing import Any

import torch

from ..backbones import Backbone, ModuleBackbone
from ..spaces import Space

__all__ = [
    "WORLD_BACKBONES",
    "WorldBackbone",
    "WorldClipSpace",
    "world_backbone_factory",
    "world_source",
    "world_task",
    "world_clip_space",
    "world_vocabulary",
]

#: Registered world backbones and what they are.
WORLD_BACKBONES: dict[str, str] = {
    "world-cnn": "concept-world CNN trained supervised on shape (has its classifier head)",
    "world-ae": "concept-world autoencoder, never saw a label (latent features)",
}


class WorldClipSpace(Space):
    """The concept world's tiny CLIP as a text-image space."""

    def __init__(self, model: Any, weights_dir: str | None = None) -> None:
        from .models import world_transform
        from .zeroshot import FACTOR_TEMPLATES

        super().__init__(
            "world-clip",
            world_transform(),
            int(model.encode_image(torch.zeros(1, 3, 64, 64)).shape[-1]),
            templates=list(FACTOR_TEMPLATES["shape"]),
            input_size=(3, 64, 64),
        )
        self.model = model.eval().requires_grad_(False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(texts)


class WorldBackbone(Backbone):
    """A world backbone whose features are its model's ``features(x)``."""

    def __init__(self, name: str, model: Any) -> None:
        from .generator import FACTORS
        from .models import world_transform

        head = getattr(model, "head", None)
        super().__init__(
            name,
            world_transform(),
            head=head,
            class_names=list(FACTORS["shape"]) if head is not None else None,
            input_size=(3, 64, 64),
        )
        self.model = model.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def world_clip_space(weights_dir: str | None = None, device: str | None = None) -> WorldClipSpace:
    """The tiny CLIP of the concept world (committed weights)."""
    from .weights import load_world_model

    space = WorldClipSpace(load_world_model("world-clip", weights_dir=weights_dir))
    return space.to(device) if device else space


def world_backbone_factory(name: str) -> Any:
    """A factory for the world backbone ``name`` (options: ``layer``, ``pool``, ``weights_dir``)."""

    def factory(
        layer: str | None = None,
        pool: str = "avg",
        weights_dir: str | None = None,
        device: str | None = None,
        **_: Any,
    ) -> Backbone:
        from .weights import load_world_model

        model = load_world_model(name, weights_dir=weights_dir)
        backbone: Backbone
        if layer is None:
            backbone = WorldBackbone(name, model)
        else:
            from .models import world_transform

            backbone = ModuleBackbone(
                model, name, world_transform(), layer=layer, pool=pool, input_size=(3, 64, 64)
            )
        return backbone.to(device) if device else backbone

    factory.__doc__ = WORLD_BACKBONES[name]
    return factory


def world_vocabulary() -> list[str]:
    """Every value word of every concept-world factor (e.g. "red", "striped", "circle")."""
    from .generator import FACTORS

    words = [w for values in FACTORS.values() for w in values]
    return list(dict.fromkeys(words))


def world_source(split: str = "test", n: int | None = None, factor: str | None = "shape") -> Any:
    """A concept-world split as an :class:`~t2c_captum.data.ImageSource`, with the factor's class
    prompts attached so zero-shot evaluation asks the tiny CLIP the right questions."""
    import hashlib

    from ..data import ImageSource
    from .dataset import WorldDataset
    from .zeroshot import FACTOR_TEMPLATES, class_prompts

    dataset = WorldDataset(split=split, n=n, factor=factor)
    digest = hashlib.sha256(repr([s.seed for s in dataset.samples]).encode()).hexdigest()[:12]
    return ImageSource(
        dataset,
        class_names=dataset.class_names or None,
        name=f"world:{split}",
        fingerprint=f"world-{split}-{len(dataset)}-{factor}-{digest}",
        templates=list(FACTOR_TEMPLATES[factor]) if factor else None,
        task=factor,
        class_prompts=class_prompts(factor) if factor else None,
    )


def world_task(source: Any, factor: str) -> Any:
    """The labels of another ``factor`` for the images of a :func:`world_source`."""
    from ..pipeline import LabelTask
    from .generator import FACTORS
    from .zeroshot import FACTOR_TEMPLATES, class_prompts

    return LabelTask(
        labels=source.items.labels(factor),
        class_names=list(FACTORS[factor]),
        name=factor,
        templates=list(FACTOR_TEMPLATES[factor]),
        class_prompts=class_prompts(factor),
    )
