"""Built-in concept vocabularies, registered through the same hook as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names shipped with open_clip."""
    from ..spaces import imagenet_class_names

    return imagenet_class_names()


@hookimpl
def register_concept_vocabularies(register: Register) -> None:
    register("imagenet", imagenet_classes, description="the 1000 ImageNet classes (open_clip)")
