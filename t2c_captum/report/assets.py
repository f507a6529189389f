"""Files beside a report's ``index.html``: image thumbnails and matplotlib figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Assets", "Figure", "Thumbnail"]


@dataclass(frozen=True)
class Thumbnail:
    """One image of the dataset, shrunk: ``src`` is relative to ``index.html``."""

    src: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True)
class Figure:
    """A saved figure: ``src`` relative to ``index.html``, with the alt text that describes it."""

    src: str
    alt: str
    caption: str = ""


class Assets:
    """Writes thumbnails (``img/``) and figures (``fig/``) under a report folder, each once.

    Args:
        root (Path): the report folder being written.
        source (ImageSource): the images the report is about (dataset indices refer to it).
        size (int, optional): longest side of a thumbnail in pixels. Default: ``160``
    """

    def __init__(self, root: Path, source: Any, size: int = 160) -> None:
        self.root = root
        self.source = source
        self.size = size
        self._thumbs: dict[tuple[str, int], Thumbnail] = {}
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / "fig").mkdir(parents=True, exist_ok=True)

    def thumbnail(self, index: int, alt: str, source: Any = None, tag: str = "a") -> Thumbnail:
        """The thumbnail of image ``index`` of ``source`` (default: the report's dataset)."""
        key = (tag, int(index))
        if key not in self._thumbs:
            image = (source or self.source).load(int(index))[0].convert("RGB")
            image.thumbnail((self.size, self.size))
            if max(image.size) < self.size // 2:  # tiny images (the concept world's): enlarge, crisp
                scale = max(1, self.size // max(image.size))
                image = image.resize((image.width * scale, image.height * scale), resample=0)
            name = f"img/{tag}{int(index):06d}.png"
            image.save(self.root / name, optimize=True)
            self._thumbs[key] = Thumbnail(name, image.width, image.height, alt)
        found = self._thumbs[key]
        return Thumbnail(found.src, found.width, found.height, alt)

    def figure(self, fig: Any, name: str, alt: str, caption: str = "", dpi: int = 100) -> Figure:
        """Save a matplotlib figure as ``fig/NAME.png`` and release it."""
        path = f"fig/{name}.png"
        fig.savefig(self.root / path, dpi=dpi)
        try:  # figures made through pyplot stay registered until closed
            import matplotlib.pyplot as plt

            plt.close(fig)
        except Exception:  # pragma: no cover - a Figure not managed by pyplot
            pass
        return Figure(path, alt, caption)

    @property
    def n_thumbnails(self) -> int:
        return len(self._thumbs)
