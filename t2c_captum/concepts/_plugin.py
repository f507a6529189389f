"""Built-in concept vocabularies, registered through the same hook as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .bank import Vocabulary
from .vocabularies import imagenet_vocabulary, visual_grouped_vocabulary, visual_vocabulary


def imagenet_classes() -> Vocabulary:
    """The 1000 ImageNet class names shipped with open_clip (one group; repeated names once)."""
    return imagenet_vocabulary()


@hookimpl
def register_concept_vocabularies(register: Register) -> None:
    register("imagenet", imagenet_classes, description="the 1000 ImageNet classes (open_clip)")
    # "visual" has no groups: its categories hold near-synonyms ("red", "crimson") and concepts that
    # co-occur (object parts), so "beats every other concept of its category" would be too strict a
    # default; "visual-grouped" offers the categories as groups for those who want contrast scoring
    register(
        "visual",
        visual_vocabulary,
        description="about 1050 general visual concepts written for t2c_captum "
        "(colours, patterns, materials, parts, scenes...)",
    )
    register(
        "visual-grouped",
        visual_grouped_vocabulary,
        description="the visual vocabulary with its categories as contrast groups (strict: a concept "
        "must beat its near-synonyms too)",
    )
