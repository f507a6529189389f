"""Concept probes: a backbone (at a layer), a space, the aligner between them and a vocabulary, as
one object with a few verbs, loaded by name, path or hub id, or attached to any ``nn.Module``.

    >>> probe = t2c.load_probe("world-cnn-probe")            # a registered probe, or an aligner path
    >>> probe.scores("world:test:shape:8").top(3)            # the concepts each image reads as
    >>> probe.explain(images, concept="star").maps           # Captum pixel maps of one concept
    >>> probe.classify(images, ["circle", "square", "star"]).names()

The probe registry (hook ``register_probes``) holds loaders that return a fitted aligner or a
:class:`Probe`; every command and function that takes an aligner path also takes a probe's name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._exceptions import ConfigurationError, DataError
from .aligners import Aligner, check_compatible, load_aligner
from .aligners.io import registered_probe
from .aligners.loading import load_target, recorded_backbone
from .backbones import Backbone, module_backbone
from .concepts import ConceptBank, Vocabulary, contrast_scores, default_vocabulary, resolve_vocabulary
from .concepts.scores import top_concepts
from .data import ImageSource, open_source
from .features import ExtractOptions

__all__ = [
    "AlignedData",
    "Probe",
    "ProbeScores",
    "attach",
    "backbone_features",
    "load_aligned",
    "load_probe",
    "recorded_backbone",  # re-export: its home is aligners.loading
]

Images = Any  # a tensor [N, 3, H, W] of preprocessed images, a list of PIL images or arrays, or a source


@dataclass
class ProbeScores:
    """Concept scores ``values [N, K]`` (cosine, or margins with ``contrast=True``) and their columns."""

    values: torch.Tensor
    concepts: list[str]

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Each image's ``k`` best concepts with their scores."""
        return top_concepts(self.values, self.concepts, k)


class Probe:
    """A fitted concept probe: ``backbone`` features → ``aligner`` → ``space``, named in words.

    Args:
        backbone (Backbone): the model whose features are explained (at the layer it was fitted on).
        space (Space or Backbone): what the aligner maps into.
        aligner (Aligner): fitted for exactly this backbone and space (checked: every field that
            differs is listed).
        vocabulary (str, list of str or Vocabulary, optional): the default concepts, a registered
            vocabulary's name or a file. Default: the space's ``default_vocabulary``
        decoder (str or CaptionDecoder, optional): what :meth:`caption` uses. Default: ``None``
        name (str, optional): the probe's name (a registered name, or the artifact it came from).
        extraction (ExtractOptions, optional): how the verbs extract features of images given as
            paths or sources (batch size, device, precision, backend, cache). Default: the
            defaults, without progress bars
    """

    def __init__(
        self,
        backbone: Backbone,
        space: Any,
        aligner: Aligner,
        *,
        vocabulary: str | Sequence[str] | Vocabulary | None = None,
        decoder: Any = None,
        name: str = "",
        extraction: ExtractOptions | None = None,
    ) -> None:
        check_compatible(aligner, backbone, space)
        self.extraction = ExtractOptions.for_task(extraction)
        self.backbone, self.space, self.aligner = backbone, space, aligner
        self.vocabulary = vocabulary if vocabulary is not None else default_vocabulary(space)
        self.decoder = decoder
        self.name = name or f"{backbone.name} -> {getattr(space, 'name', '?')}"
        self._banks: dict[tuple[str, ...] | None, ConceptBank] = {}

    def __repr__(self) -> str:
        return (f"Probe({self.name!r}: {self.backbone.name} [{self.layer}] -> "
                f"{getattr(self.space, 'name', '?')}, vocabulary={self._vocabulary_name()!r})")

    @property
    def layer(self) -> str:
        return str(self.backbone.layer)

    def _vocabulary_name(self) -> str:
        v = self.vocabulary
        return v if isinstance(v, str) else v.name if isinstance(v, Vocabulary) else f"{len(v)} concepts"

    # -- concepts -----------------------------------------------------------------------------
    def bank(self, concepts: Sequence[str] | None = None) -> ConceptBank:
        """The concept bank of ``concepts``, or of the probe's vocabulary (built once each)."""
        key = None if concepts is None else tuple(concepts)
        if key not in self._banks:
            if concepts is not None:
                vocabulary: Any = list(concepts)
            elif isinstance(self.vocabulary, str):
                vocabulary = resolve_vocabulary(self.vocabulary)
            else:
                vocabulary = self.vocabulary
            self._banks[key] = ConceptBank.build(self.space, vocabulary)
        return self._banks[key]

    # -- images -------------------------------------------------------------------------------
    def _source(self, images: Images) -> ImageSource:
        if isinstance(images, (list, tuple)) and images and not isinstance(images[0], (str, os.PathLike)):
            return ImageSource(list(images), name="images")
        if isinstance(images, (list, tuple)):
            from .data import open_images

            return open_images([os.fspath(i) for i in images])
        return open_source(images)

    def _pixels(self, images: Images, limit: int | None = None) -> torch.Tensor:
        """Preprocessed images ``[N, 3, H, W]`` (tensors pass through)."""
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                raise DataError(
                    f"images must be [N, 3, H, W] preprocessed tensors, got shape {list(images.shape)}"
                )
            return images
        source = self._source(images)
        n = len(source) if limit is None else min(limit, len(source))
        return torch.stack([self.backbone.preprocess(source.load(i)[0]) for i in range(n)])

    def features(
        self, images: Images, *, batch_size: int | None = None, extraction: ExtractOptions | None = None
    ) -> torch.Tensor:
        """Backbone features ``[N, d]``: tensors run directly, ``batch_size`` at a time; anything else
        goes through a feature store (cached, resumable; in the source's order), extracted with
        ``extraction`` (default: the probe's) and ``batch_size`` applied over it."""
        options = ExtractOptions.for_task(extraction or self.extraction, batch_size=batch_size)
        batch_size = options.batch_size
        if isinstance(images, torch.Tensor):
            x = self._pixels(images)
            device = next(self.backbone.parameters(), torch.zeros(0)).device
            with torch.no_grad():
                return torch.cat([self.backbone(x[i : i + batch_size].to(device)).cpu()
                                  for i in range(0, x.shape[0], batch_size)])
        data = backbone_features(self._source(images), self.backbone, options).load()
        return data["source"][data["indices"].argsort()]

    # -- verbs --------------------------------------------------------------------------------
    def scores(self, images: Images, concepts: Sequence[str] | None = None, *,
               contrast: bool = False) -> ProbeScores:
        """Cosine of each image's aligned features with each concept (``contrast=True``: the margin
        over the best other concept of its group, for vocabularies with groups)."""
        from .concepts import concept_scores

        bank = self.bank(concepts)
        values = concept_scores(self.features(images), bank, self.aligner)
        return ProbeScores(contrast_scores(values, bank) if contrast else values, list(bank.concepts))

    def classify(self, images: Images, classes: Sequence[str], *, templates: Sequence[str] | None = None,
                 k: int = 1) -> Any:
        """Zero-shot classification among ``classes`` through the aligner (a :class:`ZeroShotResult`)."""
        from .zeroshot import ZeroShotClassifier

        classifier = ZeroShotClassifier(self.space, list(classes), templates, aligner=self.aligner)
        return classifier.predict(self.features(images), k=k)

    def concept_probe(self, concepts: Sequence[str] | None = None) -> nn.Module:
        """The ``nn.Module`` images → cosine with ``concepts``, for any ``captum.attr`` method."""
        from .explain import ConceptProbe

        bank = self.bank(concepts)
        return ConceptProbe(self.backbone, self.aligner, bank, list(bank.concepts))

    def explain(self, images: Images, concept: str, method: str = "integrated_gradients", *,
                limit: int = 16, **kwargs: Any) -> Any:
        """Pixel maps of one concept (:class:`~t2c_captum.explain.ConceptMaps`) by a Captum method."""
        from .explain import attribute_concept

        bank = self.bank()
        concepts = list(bank.concepts) if concept in bank else [*bank.concepts, concept]
        probe = self.concept_probe(None if concept in bank else concepts)
        return attribute_concept(probe, self._pixels(images, limit), concept, method, **kwargs)  # type: ignore[arg-type]

    def name_units(self, units: Sequence[int] | None = None, *, images: Images = None,
                   concepts: Sequence[str] | None = None, k: int = 3) -> Any:
        """Names of the layer's units, through the aligner and (given ``images``) from the images that
        activate each unit most (:class:`~t2c_captum.explain.NamedUnits`)."""
        from .explain import name_units

        examples = None if images is None else self.features(images)
        return name_units(self.aligner, self.bank(concepts), units, probe_features=examples, k=k)

    def caption(self, images: Images, decoder: Any = None, **options: Any) -> list[str]:
        """Captions of the images' aligned features by a caption decoder for the space."""
        from .decoders import caption_features, load_decoder

        chosen = decoder if decoder is not None else self.decoder
        if chosen is None:
            raise ConfigurationError(
                f"probe {self.name!r} names no caption decoder; pass decoder= a registered decoder "
                "(t2c plugins lists them) or a saved one trained for its space (t2c decoder train)"
            )
        return caption_features(load_decoder(chosen), self.features(images), self.aligner, **options)


def load_probe(
    spec: str | os.PathLike[str] | Probe,
    *,
    backbone: str | Backbone | None = None,
    space: Any = None,
    checkpoint: str | None = None,
    space_checkpoint: str | None = None,
    vocabulary: str | Sequence[str] | Vocabulary | None = None,
    extraction: ExtractOptions | None = None,
) -> Probe:
    """A probe from a registered probe name, a saved aligner (``NAME``, ``NAME.json``, a folder) or
    ``hf-hub:ORG/REPO[/NAME]``, with the backbone (at its layer) and the space the aligner records.

    ``backbone``/``space`` (names or objects) replace the recorded ones and are checked against
    them; ``checkpoint``/``space_checkpoint`` are their local weights; ``extraction`` is how the
    probe's verbs extract features (:class:`Probe`).
    """
    if isinstance(spec, Probe):
        return spec
    loaded = registered_probe(os.fspath(spec))
    if isinstance(loaded, Probe):
        if backbone is None and space is None and vocabulary is None and extraction is None:
            return loaded
        aligner, given = loaded.aligner, loaded
    else:
        aligner, given = (loaded if loaded is not None else load_aligner(spec)), None
    if isinstance(backbone, Backbone):
        bb = backbone
    elif given is not None and backbone is None:
        bb = given.backbone
    else:
        bb = recorded_backbone(aligner, backbone, checkpoint)
    if isinstance(space, nn.Module):
        target = space
    elif given is not None and space is None:
        target = given.space
    else:
        target = load_target(space or aligner.target_.get("id", ""), checkpoint=space_checkpoint)
    return Probe(bb, target, aligner, vocabulary=vocabulary if vocabulary is not None else
                 (given.vocabulary if given is not None else None),
                 decoder=given.decoder if given is not None else None, name=os.fspath(spec),
                 extraction=extraction if extraction is not None else
                 (given.extraction if given is not None else None))


def attach(
    model: nn.Module | Backbone,
    *,
    space: Any,
    data: Any = None,
    layer: str | None = None,
    aligner: str | os.PathLike[str] | Aligner | None = None,
    vocabulary: str | Sequence[str] | Vocabulary | None = None,
    preprocess: Any = None,
    input_size: tuple[int, int, int] = (3, 224, 224),
    name: str | None = None,
    extraction: ExtractOptions | None = None,
    **fit_options: Any,
) -> Probe:
    """Concept explanations for any ``nn.Module``: fit (or load) the aligner from ``layer``'s features
    into ``space`` and return the :class:`Probe`.

    Args:
        model (nn.Module or Backbone): the model; a plain module is read at ``layer`` (a module
            name; default: the input of its last ``nn.Linear``, the penultimate features), its images
            prepared by ``preprocess`` (default: timm's ImageNet evaluation transform at ``input_size``).
        space: a space name (``"open_clip:ViT-B-16@openai"``, ``"world-clip"``) or object.
        data: images to fit on (anything :func:`~t2c_captum.open_source` opens); not needed with
            ``aligner=``.
        aligner: a saved aligner (path, probe name or object) to use instead of fitting.
        extraction (ExtractOptions, optional): how features are extracted, to fit the aligner and
            in the probe's verbs. Default: the defaults, without progress bars
        **fit_options: passed to :func:`~t2c_captum.fit_aligner` (``kind``, ``batch_size``...).

    Examples::

        >>> probe = t2c.attach(my_resnet, layer="layer4", space="open_clip:ViT-B-16@openai",
        ...                    data="photos/")
        >>> probe.scores("photos/").top(5)
    """
    from .alignment import fit_aligner

    backbone = model if isinstance(model, Backbone) else module_backbone(
        model, layer=layer, preprocess=preprocess, input_size=input_size, name=name
    )
    target = load_target(space)
    if aligner is None:
        if data is None:
            raise DataError("attach needs data= images to fit the aligner on, or aligner= a saved one")
        if extraction is None:  # no progress bars unless asked for
            fit_options.setdefault("progress", False)
        fitted, _ = fit_aligner(backbone, target, data, extraction=extraction, **fit_options)
    elif isinstance(aligner, Aligner):
        fitted = aligner
    else:
        loaded = registered_probe(os.fspath(aligner))
        fitted = getattr(loaded, "aligner", loaded) or load_aligner(aligner)
    return Probe(backbone, target, fitted, vocabulary=vocabulary, name=name or backbone.name,
                 extraction=extraction)


@dataclass
class AlignedData:
    """A saved aligner (or a registered probe) with its backbone and space, ready to score images."""

    aligner: Any
    backbone: Any
    space: Any
    vocabulary: Any = None  # the probe's default concepts (None: the space's default vocabulary)

    def features(self, data: Any, extraction: ExtractOptions | None = None) -> Any:
        """A feature store (key ``source``) of the backbone's features of ``data``."""
        return backbone_features(data, self.backbone, extraction)


def backbone_features(data: Any, backbone: Any, extraction: ExtractOptions | None = None) -> Any:
    """A feature store (key ``source``) of ``backbone``'s features of ``data``."""
    return (extraction or ExtractOptions()).extract(data, {"source": backbone})


def load_aligned(aligner: str, backbone: str | None = None, checkpoint: str | None = None) -> AlignedData:
    """A saved aligner or a registered probe's, with the backbone and space recorded in it (checked
    to match)."""
    probe = load_probe(aligner, backbone=backbone, checkpoint=checkpoint)
    return AlignedData(probe.aligner, probe.backbone, probe.space, probe.vocabulary)
