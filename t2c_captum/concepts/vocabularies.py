"""Built-in concept vocabularies shipped as package data.

``visual`` is a general visual vocabulary written for t2c_captum (colours, patterns, textures, materials,
shapes, object parts, objects, animals, plants, food, scenes, weather, lighting, viewpoint, art styles,
image quality, sizes and quantities, actions and states), for label-free concept bottlenecks, concept
scoring and shift diagnosis with CLIP-like models.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

from .._exceptions import DataError, UnknownNameError
from .bank import Vocabulary

__all__ = ["imagenet_vocabulary", "visual_categories", "visual_grouped_vocabulary", "visual_vocabulary"]

_VISUAL_FILE = "visual.txt"
_CATEGORY_PREFIX = "# category:"


@functools.cache
def _read_categories(filename: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Parse a packaged vocabulary file into ``(category, concepts)`` pairs, in file order."""
    data = resources.files("t2c_captum.concepts").joinpath("data")
    text = data.joinpath(filename).read_text(encoding="utf-8")
    categories: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.lower().startswith(_CATEGORY_PREFIX):
            name = line[len(_CATEGORY_PREFIX) :].strip()
            current = categories.setdefault(name, [])
        elif line and not line.startswith("#"):
            if current is None:
                raise DataError(f"{filename}:{number}: concept {line!r} comes before any category header")
            current.append(line)
    return tuple((name, tuple(concepts)) for name, concepts in categories.items())


def visual_categories() -> dict[str, list[str]]:
    """The general visual vocabulary, grouped by category.

    Returns:
        dict[str, list[str]]: Category name (e.g. ``"colours"``, ``"materials"``) to its concepts, both
        in file order.
    """
    return {name: list(concepts) for name, concepts in _read_categories(_VISUAL_FILE)}


def visual_vocabulary(categories: Sequence[str] | None = None) -> list[str]:
    """General visual concepts written for t2c_captum, optionally restricted to some categories.

    Args:
        categories (Sequence[str], optional): Category names to keep (see :func:`visual_categories`),
            in the order wanted; a single string is read as one name. If None, all categories are used.
            Default: None

    Returns:
        list[str]: The concepts of the chosen categories, without duplicates.

    Raises:
        UnknownNameError: If a category name is not in the vocabulary.
    """
    grouped = visual_categories()
    if categories is None:
        names = list(grouped)
    else:
        names = [categories] if isinstance(categories, str) else list(categories)
    for name in names:
        if name not in grouped:
            valid = ", ".join(grouped)
            raise UnknownNameError(
                "visual category name", name, grouped, hint=f"Valid visual categories: {valid}."
            )
    return list(dict.fromkeys(concept for name in names for concept in grouped[name]))


def visual_grouped_vocabulary() -> Vocabulary:
    """The whole general visual vocabulary with its categories as groups (the ``visual`` vocabulary).

    Returns:
        Vocabulary: every concept of :func:`visual_vocabulary`, ``groups`` mapping each to its category
        (so a colour's alternatives are the other colours).
    """
    groups = {c: name for name, concepts in visual_categories().items() for c in concepts}
    return Vocabulary(visual_vocabulary(), name="visual", groups=groups)


#: Group of every class of the ``imagenet`` vocabulary: the classes are alternatives of each other.
IMAGENET_GROUP = "imagenet class"


def imagenet_vocabulary() -> Vocabulary:
    """The 1000 ImageNet class names shipped with open_clip, all in one group (``imagenet class``).

    Returns:
        Vocabulary: the class names, each the alternative of every other.
    """
    from ..spaces import imagenet_class_names

    names = list(dict.fromkeys(imagenet_class_names()))
    return Vocabulary(names, name="imagenet", groups=dict.fromkeys(names, IMAGENET_GROUP))
