"""Deterministic synthetic images with known factors, captions and named splits.

Every image shows 1-3 copies of one object (same shape, colour, pattern and size) on a grey
background. All randomness of a sample comes from its ``seed``, so ``render(sample)`` always
returns the same pixels.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from t2c_captum._exceptions import WorldError

__all__ = [
    "CANONICAL_COUNTS",
    "COLOUR_RGB",
    "DEFAULT_SPLIT_SIZES",
    "FACTORS",
    "GENERIC_NOUNS",
    "HELD_OUT_PAIRS",
    "IMAGE_SIZE",
    "SPLITS",
    "SYNONYMS",
    "Sample",
    "check_factor",
    "check_value",
    "make_captions",
    "make_sample",
    "make_split",
    "max_count",
    "object_mask",
    "render",
]

IMAGE_SIZE = 64

#: Factor name -> canonical value words (the index of a word is its class label).
FACTORS: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "star", "cross", "hexagon"),
    "colour": ("red", "green", "blue", "yellow", "purple", "orange", "pink"),
    "pattern": ("solid", "striped", "dotted", "checkered"),
    "size": ("small", "large"),
    "background": ("light", "dark", "striped", "dotted", "gradient", "noisy"),
    "position": ("left", "centre", "right"),
    "count": ("one", "two", "three"),
}
CANONICAL_COUNTS = {1: "one", 2: "two", 3: "three"}

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 50),
    "blue": (35, 75, 225),
    "yellow": (240, 215, 20),
    "purple": (135, 40, 185),
    "orange": (250, 130, 15),
    "pink": (250, 125, 195),
}

#: Shape-colour pairs that never occur in train/val/test; the ``compositional`` split has only them.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("circle", "purple"),
    ("square", "orange"),
    ("triangle", "green"),
    ("star", "pink"),
    ("hexagon", "blue"),
)

#: Words a caption may use for each value. Shapes list (singular, plural) pairs; backgrounds are
#: noun phrases; positions are prepositional phrases. The first entry is the canonical form.
SYNONYMS: dict[str, dict[str, tuple]] = {
    "shape": {
        "circle": (("circle", "circles"), ("disc", "discs"), ("disk", "disks")),
        "square": (("square", "squares"), ("box", "boxes"), ("tile", "tiles")),
        "triangle": (("triangle", "triangles"), ("three-sided shape", "three-sided shapes")),
        "star": (("star", "stars"), ("five-pointed star", "five-pointed stars")),
        "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
        "hexagon": (("hexagon", "hexagons"), ("six-sided shape", "six-sided shapes")),
    },
    "colour": {
        "red": ("red", "crimson", "scarlet"),
        "green": ("green", "emerald"),
        "blue": ("blue", "azure", "cobalt"),
        "yellow": ("yellow", "golden", "lemon"),
        "purple": ("purple", "violet"),
        "orange": ("orange", "tangerine"),
        "pink": ("pink", "rosy", "rose"),
    },
    "pattern": {
        "solid": ("solid", "filled", "plain-coloured"),
        "striped": ("striped", "stripy", "banded"),
        "dotted": ("dotted", "spotted", "polka-dot"),
        "checkered": ("checkered", "chequered", "checked"),
    },
    "size": {
        "small": ("small", "tiny", "little"),
        "large": ("large", "big", "huge"),
    },
    "background": {
        "light": ("light background", "pale backdrop", "white background", "bright backdrop"),
        "dark": ("dark background", "black backdrop", "dim background"),
        "striped": ("striped background", "lined backdrop", "background of stripes"),
        "dotted": ("dotted background", "spotty backdrop", "background of dots"),
        "gradient": ("gradient background", "fading backdrop", "smooth gradient"),
        "noisy": ("noisy background", "grainy backdrop", "static background"),
    },
    "position": {
        "left": ("on the left", "at the left side", "to the left"),
        "centre": ("in the centre", "in the middle", "in the center"),
        "right": ("on the right", "at the right side", "to the right"),
    },
    "count": {
        "one": ("a", "one", "a single"),
        "two": ("two", "a pair of"),
        "three": ("three", "a trio of"),
    },
}

SPLITS = ("train", "val", "test", "compositional")
DEFAULT_SPLIT_SIZES = {"train": 20000, "val": 2000, "test": 2000, "compositional": 1000}
_SPLIT_SEEDS = {"train": 1101, "val": 2202, "test": 3303, "compositional": 4404}

_OBJECT_PIXELS = {"small": 14, "large": 26}
_MARGIN = 1
_MIN_GAP = 2
_COLUMN_X = {"left": 16, "centre": 32, "right": 48}
_DARK_SHADE = 0.3
_N_CAPTIONS = 5


def _invalid(kind: str, name: object, valid: Iterable[str]) -> WorldError:
    valid = list(valid)
    msg = f"unknown {kind} {name!r}."
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    if close:
        msg += f" Did you mean {', '.join(repr(c) for c in close)}?"
    return WorldError(msg + f" Valid {kind}s: {', '.join(valid)}.")


def check_factor(factor: str) -> str:
    """Return ``factor`` if it is a factor name, else raise :class:`WorldError`."""
    if factor not in FACTORS:
        raise _invalid("factor", factor, FACTORS)
    return factor


def check_value(factor: str, value: str | int) -> str:
    """Return the canonical word of ``value`` for ``factor`` (counts may be given as ints)."""
    check_factor(factor)
    if factor == "count" and isinstance(value, int) and value in CANONICAL_COUNTS:
        return CANONICAL_COUNTS[value]
    if value not in FACTORS[factor]:
        raise _invalid(f"{factor} value", value, FACTORS[factor])
    return str(value)


def max_count(size: str) -> int:
    """Most objects of ``size`` that fit stacked in one column of the image (at most 3)."""
    side = _OBJECT_PIXELS[check_value("size", size)]
    usable = IMAGE_SIZE - 2 * _MARGIN
    return min(len(CANONICAL_COUNTS), (usable + _MIN_GAP) // (side + _MIN_GAP))


@dataclass(frozen=True)
class Sample:
    """One image's factors, its render seed and its captions (``count`` is 1-3)."""

    shape: str
    colour: str
    pattern: str
    size: str
    background: str
    position: str
    count: int
    seed: int
    captions: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for name in FACTORS:
            if name != "count":
                check_value(name, getattr(self, name))
        if self.count not in CANONICAL_COUNTS:
            raise WorldError(f"count must be 1, 2 or 3, got {self.count!r}.")
        if self.count > max_count(self.size):
            raise WorldError(
                f"{self.count} {self.size} objects do not fit in one image "
                f"(at most {max_count(self.size)} {self.size} objects fit)."
            )

    @property
    def factors(self) -> dict[str, str]:
        """Factor name -> canonical value word (count as 'one'/'two'/'three')."""
        out = {name: getattr(self, name) for name in FACTORS if name != "count"}
        out["count"] = CANONICAL_COUNTS[self.count]
        return {name: out[name] for name in FACTORS}

    def value(self, factor: str) -> str:
        """Canonical word of one factor."""
        return self.factors[check_factor(factor)]


def make_sample(seed: int = 0, captions: bool = True, **factors: str | int) -> Sample:
    """Build a validated sample; missing factors are drawn from ``seed``.

    Args:
        seed: render seed (also drives missing factors and captions).
        captions: whether to generate captions.
        **factors: factor values by name (canonical words; count may be an int).

    Returns:
        The :class:`Sample`.
    """
    for name in factors:
        check_factor(name)
    forced = {name: check_value(name, value) for name, value in factors.items()}
    rng = np.random.default_rng([seed, 7])
    values = _draw_factors(rng, forced, held_out=None)
    sample = Sample(**values, seed=seed)
    if captions:
        sample = _with_captions(sample, rng)
    return sample


# --------------------------------------------------------------------------- sampling


def _draw_factors(
    rng: np.random.Generator, forced: Mapping[str, str], held_out: bool | None
) -> dict:
    """Draw factor values; ``held_out`` True = only held-out pairs, False = none, None = any."""
    values: dict = {}
    for name in ("pattern", "background", "position"):
        values[name] = forced.get(name) or str(rng.choice(FACTORS[name]))
    values["shape"], values["colour"] = _draw_shape_colour(rng, forced, held_out)
    values["size"], values["count"] = _draw_size_count(rng, forced)
    return values


def _draw_shape_colour(
    rng: np.random.Generator, forced: Mapping[str, str], held_out: bool | None
) -> tuple[str, str]:
    for _ in range(1000):
        if held_out:
            shape, colour = HELD_OUT_PAIRS[int(rng.integers(len(HELD_OUT_PAIRS)))]
        else:
            shape, colour = str(rng.choice(FACTORS["shape"])), str(rng.choice(FACTORS["colour"]))
        shape, colour = forced.get("shape", shape), forced.get("colour", colour)
        if held_out is None or ((shape, colour) in HELD_OUT_PAIRS) == held_out:
            return shape, colour
    raise WorldError(f"no shape-colour pair satisfies {dict(forced)} with held_out={held_out}.")


def _draw_size_count(rng: np.random.Generator, forced: Mapping[str, str]) -> tuple[str, int]:
    count_word = forced.get("count")
    count = FACTORS["count"].index(count_word) + 1 if count_word else None
    if "size" in forced:
        size = forced["size"]
    else:
        fitting = [s for s in FACTORS["size"] if count is None or count <= max_count(s)]
        size = str(rng.choice(fitting))
    if count is None:
        count = int(rng.integers(1, max_count(size) + 1))
    return size, count


def _split_sample(name: str, index: int) -> Sample:
    rng = np.random.default_rng([_SPLIT_SEEDS[name], index])
    values = _draw_factors(rng, {}, held_out=(name == "compositional"))
    sample = Sample(**values, seed=int(rng.integers(2**31 - 1)))
    return _with_captions(sample, rng)


@lru_cache(maxsize=16)
def _split_cached(name: str, n: int) -> tuple[Sample, ...]:
    return tuple(_split_sample(name, i) for i in range(n))


def make_split(name: str, n: int | None = None) -> list[Sample]:
    """Samples of a named split; the first ``n`` samples are the same whatever ``n`` is.

    Args:
        name: one of ``SPLITS`` (train, val, test, compositional).
        n: number of samples (default ``DEFAULT_SPLIT_SIZES[name]``).

    Returns:
        The list of samples.
    """
    if name not in SPLITS:
        raise _invalid("split", name, SPLITS)
    n = DEFAULT_SPLIT_SIZES[name] if n is None else int(n)
    if n < 0:
        raise WorldError(f"n must be >= 0, got {n}.")
    return list(_split_cached(name, n))


# --------------------------------------------------------------------------- captions

_TEMPLATES = (
    "{n} {size} {colour} {pattern} {shape} on {bg}",
    "{n} {colour} {pattern} {shape} {pos}, on {bg}",
    "an image showing {n} {size} {colour} {shape}, {pattern}, against {bg}",
    "a picture of {n} {pattern} {colour} {shape} over {bg}",
    "{bg} with {n} {size} {colour} {pattern} {shape} {pos}",
    "{n} {size} {pattern} {shape}, {colour}, on {bg}",
    "a photo of {n} {colour} {shape} {pos} that {be} {pattern}, on {bg}",
    "{n} {colour} {shape} {pos} against {bg}",
    "{n} {size} {colour} {pattern} {shape}",
    "a photo of {n} {colour} {shape}",
    "{n} {size} {colour} {pattern} {thing} on {bg}",
    "an image showing {n} {colour} {thing} {pos}",
)
_TEMPLATE_WEIGHTS = np.array([3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1.5, 0.5], dtype=float)
#: Generic nouns used instead of the shape by a few captions (singular, plural).
GENERIC_NOUNS = (("object", "objects"), ("shape", "shapes"), ("thing", "things"))


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _pick(rng: np.random.Generator, options: tuple) -> Any:
    return options[int(rng.integers(len(options)))]


def make_captions(sample: Sample, rng: np.random.Generator, k: int = _N_CAPTIONS) -> list[str]:
    """``k`` paraphrased captions of ``sample``; all name the colour, most name the shape."""
    templates = rng.choice(len(_TEMPLATES), size=k, p=_TEMPLATE_WEIGHTS / _TEMPLATE_WEIGHTS.sum())
    return [_fill(_TEMPLATES[int(t)], sample, rng) for t in templates]


def _fill(template: str, sample: Sample, rng: np.random.Generator) -> str:
    plural = sample.count > 1
    words = {
        "shape": _pick(rng, SYNONYMS["shape"][sample.shape])[int(plural)],
        "colour": _pick(rng, SYNONYMS["colour"][sample.colour]),
        "pattern": _pick(rng, SYNONYMS["pattern"][sample.pattern]),
        "size": _pick(rng, SYNONYMS["size"][sample.size]),
        "bg": _article(str(_pick(rng, SYNONYMS["background"][sample.background]))),
        "pos": _pick(rng, SYNONYMS["position"][sample.position]),
        "be": "are" if plural else "is",
        "thing": _pick(rng, GENERIC_NOUNS)[int(plural)],
    }
    text = template.format(n="{n}", **words)
    count_word = str(_pick(rng, SYNONYMS["count"][CANONICAL_COUNTS[sample.count]]))
    head, _, tail = text.partition("{n} ")
    if count_word == "a":
        return head + _article(tail)
    return head + count_word + " " + tail


def _with_captions(sample: Sample, rng: np.random.Generator) -> Sample:
    return replace(sample, captions=tuple(make_captions(sample, rng)))


# --------------------------------------------------------------------------- rendering


@lru_cache(maxsize=64)
def _shape_mask(shape: str, side: int) -> np.ndarray:
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    c, r = (side - 1) / 2, side / 2
    if shape == "circle":
        draw.ellipse([0, 0, side - 1, side - 1], fill=255)
    elif shape == "square":
        inset = round(side * 0.08)
        draw.rectangle([inset, inset, side - 1 - inset, side - 1 - inset], fill=255)
    elif shape == "triangle":
        draw.polygon([(c, 0), (side - 1, side - 1), (0, side - 1)], fill=255)
    elif shape == "star":
        draw.polygon(_star_points(c, r, 5, 0.45), fill=255)
    elif shape == "cross":
        arm = side / 3
        draw.rectangle([arm, 0, side - 1 - arm, side - 1], fill=255)
        draw.rectangle([0, arm, side - 1, side - 1 - arm], fill=255)
    else:  # hexagon
        draw.polygon(_star_points(c, r, 3, 1.0, start=0.0), fill=255)
    return np.asarray(img) > 127


def _star_points(
    c: float, r: float, points: int, inner: float, start: float = -np.pi / 2
) -> list[tuple[float, float]]:
    out = []
    for i in range(points * 2):
        radius = r if i % 2 == 0 else r * inner
        angle = start + i * np.pi / points
        out.append((c + radius * np.cos(angle), c + radius * np.sin(angle)))
    return out


@lru_cache(maxsize=16)
def _pattern_mask(pattern: str, side: int) -> np.ndarray:
    """True where the object shows its dark shade."""
    yy, xx = np.mgrid[0:side, 0:side]
    if pattern == "striped":
        return ((xx + yy) // 2) % 2 == 1
    if pattern == "dotted":
        return ((xx % 5) - 2) ** 2 + ((yy % 5) - 2) ** 2 <= 1
    if pattern == "checkered":
        return ((xx // 3) + (yy // 3)) % 2 == 1
    return np.zeros((side, side), dtype=bool)


def _background(kind: str, rng: np.random.Generator) -> np.ndarray:
    n = IMAGE_SIZE
    yy, xx = np.mgrid[0:n, 0:n]
    if kind == "light":
        grey = np.full((n, n), rng.uniform(200, 230))
    elif kind == "dark":
        grey = np.full((n, n), rng.uniform(35, 60))
    elif kind == "striped":
        coord = yy if rng.random() < 0.5 else xx
        period = int(rng.integers(6, 9))
        grey = np.where(((coord + rng.integers(period)) % period) < period // 2, 175.0, 105.0)
    elif kind == "dotted":
        period = int(rng.integers(6, 8))
        dy, dx = (yy % period) - period // 2, (xx % period) - period // 2
        grey = np.where(dy**2 + dx**2 <= 2, 90.0, 170.0)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * (xx - n / 2) + np.sin(angle) * (yy - n / 2)) / n + 0.5
        grey = 50 + 170 * np.clip(t, 0, 1)
    else:  # noisy
        grey = rng.uniform(50, 210, size=(n, n))
    return np.repeat(grey[..., None], 3, axis=2)


def _object_origins(sample: Sample, rng: np.random.Generator) -> list[tuple[int, int]]:
    side = _OBJECT_PIXELS[sample.size]
    free = IMAGE_SIZE - 2 * _MARGIN - sample.count * side - (sample.count - 1) * _MIN_GAP
    if free < 0:
        raise WorldError(f"{sample.count} {sample.size} objects do not fit in one image.")
    cuts = np.sort(rng.integers(0, free + 1, size=sample.count))
    gaps = np.diff(np.concatenate([[0], cuts]))
    origins, y = [], _MARGIN
    for i, gap in enumerate(gaps):
        y += int(gap) + (_MIN_GAP if i else 0)
        x_centre = _COLUMN_X[sample.position] + int(rng.integers(-2, 3))
        x = int(np.clip(x_centre - side // 2, 0, IMAGE_SIZE - side))
        origins.append((y, x))
        y += side
    return origins


def _draw(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The float RGB canvas of ``sample`` and the boolean mask of its objects' pixels."""
    rng = np.random.default_rng([sample.seed, 1])
    canvas = _background(sample.background, rng)
    base = np.array(COLOUR_RGB[sample.colour], dtype=float) + rng.uniform(-12, 12, size=3)
    base = np.clip(base, 0, 255)
    side = _OBJECT_PIXELS[sample.size]
    shape, dark = _shape_mask(sample.shape, side), _pattern_mask(sample.pattern, side)
    texture = np.where(dark[..., None], base * _DARK_SHADE, base)
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    for y, x in _object_origins(sample, rng):
        window = canvas[y : y + side, x : x + side]
        window[shape] = texture[shape]
        mask[y : y + side, x : x + side] |= shape
    return canvas, mask


def render(sample: Sample) -> Image.Image:
    """Draw ``sample`` as a 64x64 RGB image (identical pixels for identical samples)."""
    canvas, _ = _draw(sample)
    return Image.fromarray(np.round(canvas).astype(np.uint8), mode="RGB")


def object_mask(sample: Sample) -> np.ndarray:
    """Boolean ``[64, 64]`` mask of the pixels covered by ``sample``'s objects (ground truth for
    attribution maps)."""
    return _draw(sample)[1]
