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
    "fit_world_aligner",
    "world_backbone_factory",
    "world_source",
    "world_task",
    "world_clip_space",
    "world_concepts",
    "world_vocabulary",
]

#: Registered world backbones and what they are.
WORLD_BACKBONES: dict[str, str] = {
    "world-cnn": "concept-world CNN trained supervised on shape (has its classifier head)",
    "world-ae": "concept-world autoencoder, never saw a label (latent features)",
    "world-vit": "concept-world ViT with a conv stem, supervised on every factor (head: its shape "
    "classifier; layers patch_embed, blocks.0-3)",
}


class WorldClipSpace(Space):
    """The concept world's tiny CLIP as a text-image space."""

    default_vocabulary = "world"

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
    from .weights import load_world_model, weights_digest

    space = WorldClipSpace(load_world_model("world-clip", weights_dir=weights_dir))
    space.identity_extra["weights"] = weights_digest("world-clip", weights_dir)
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
        from .weights import load_world_model, weights_digest

        model = load_world_model(name, weights_dir=weights_dir)
        backbone: Backbone
        if layer is None:
            backbone = WorldBackbone(name, model)
        else:
            from .models import world_transform

            backbone = ModuleBackbone(
                model, name, world_transform(), layer=layer, pool=pool, input_size=(3, 64, 64)
            )
        backbone.identity_extra["weights"] = weights_digest(name, weights_dir)
        return backbone.to(device) if device else backbone

    factory.__doc__ = WORLD_BACKBONES[name]
    return factory


def world_concepts() -> dict[str, tuple[str, str]]:
    """Concept text → ``(factor, value)`` for every factor value ("red", "striped background")."""
    from .generator import FACTORS
    from .tasks import concept_term

    return {concept_term(f, v): (f, v) for f, values in FACTORS.items() for v in values}


def world_vocabulary() -> Any:
    """Every factor value of the concept world as a concept, with the tiny CLIP's prompts for it
    and its factor as its group (the other colours are the alternatives of ``"red"``): a
    :class:`~t2c_captum.concepts.Vocabulary`."""
    from ..concepts.bank import Vocabulary
    from .zeroshot import class_prompts

    concepts = world_concepts()
    prompts = {f: class_prompts(f) for f in {f for f, _ in concepts.values()}}
    return Vocabulary(
        list(concepts),
        {term: list(prompts[f][v]) for term, (f, v) in concepts.items()},
        name="world",
        groups={term: f for term, (f, _) in concepts.items()},
    )


def open_world_spec(rest: str, **options: Any) -> Any:
    """The source of a ``world:SPLIT[:FACTOR[:N]]`` spec (``rest`` is the text after ``world:``);
    ``factor=`` and ``n=`` options apply where the spec leaves them out."""
    split, *more = rest.split(":")
    factor = more[0] if more else options.get("factor", "shape")
    n = int(more[1]) if len(more) > 1 and more[1] else options.get("n")
    return world_source(split, n=n, factor=factor or None)


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
    from ..alignment import LabelTask
    from .generator import FACTORS
    from .zeroshot import FACTOR_TEMPLATES, class_prompts

    return LabelTask(
        labels=source.items.labels(factor),
        class_names=list(FACTORS[factor]),
        name=factor,
        templates=list(FACTOR_TEMPLATES[factor]),
        class_prompts=class_prompts(factor),
    )


def fit_world_aligner(
    backbone: str = "world-cnn",
    n_train: int = 4000,
    store_dir: str | None = None,
    progress: bool = False,
    layer: str | None = None,
) -> tuple[Backbone, Space, Any]:
    """A world backbone, the tiny CLIP and a closed-form aligner between them, fitted by
    :func:`~t2c_captum.alignment.fit_aligner` on the first ``n_train`` training images (for examples,
    tests and benchmarks); ``layer`` aligns an inner layer of the model (average-pooled) instead of
    its features; ``store_dir`` holds the feature store (default: the cache).

    Returns:
        ``(backbone, space, aligner)``.
    """
    from ..alignment import fit_aligner
    from ..backbones import load_backbone
    from ..spaces import load_space

    bb, space = load_backbone(backbone, layer=layer), load_space("world-clip")
    data = world_source("train", n=n_train)
    aligner, _ = fit_aligner(bb, space, data, cache_dir=store_dir, progress=progress)
    return bb, space, aligner
