"""Built-in concept vocabularies, registered through the same hook as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .vocabularies import visual_vocabulary


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names shipped with open_clip."""
    from ..spaces import imagenet_class_names

    return imagenet_class_names()


@hookimpl
def register_concept_vocabularies(register: Register) -> None:
    register("imagenet", imagenet_classes, description="the 1000 ImageNet classes (open_clip)")
    register(
        "visual",
        visual_vocabulary,
        description="about 1050 general visual concepts written for t2c_captum "
        "(colours, patterns, materials, parts, scenes...)",
    )
