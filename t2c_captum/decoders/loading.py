"""Loading a caption decoder: by registered name, by the path of a saved prefix decoder, or as
``clipcap:PATH`` for a ClipCap checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._exceptions import UnknownNameError
from .base import CaptionDecoder
from .clipcap import load_clipcap
from .prefix import load_prefix_decoder

__all__ = ["list_decoders", "load_decoder"]


def list_decoders(pattern: str = "*") -> list[str]:
    """Names of the registered decoders matching a glob ``pattern``."""
    from ..plugins import get_registries

    return get_registries().decoders.names(pattern)


def load_decoder(spec: str | os.PathLike[str] | Any, **options: Any) -> Any:
    """A caption decoder from a registered name (``"world-decoder"``), a saved :class:`PrefixDecoder`
    (``NAME``, ``NAME.json`` or a folder with ``decoder.json``), or ``clipcap:PATH`` (options go to
    :func:`load_clipcap`: ``gpt=``, ``tokenizer=``, ``space=``...)."""
    if isinstance(spec, CaptionDecoder) and not isinstance(spec, (str, os.PathLike)):
        return spec
    from ..plugins import get_registries

    text = os.fspath(spec)
    registry = get_registries().decoders
    if text in registry:
        return registry.get(text)(**options)
    if text.startswith("clipcap:"):
        return load_clipcap(text.removeprefix("clipcap:"), **options)
    path = Path(text)
    if path.is_dir() or path.with_suffix(".json").is_file() or path.suffix == ".json":
        return load_prefix_decoder(path, space=options.get("space"))
    raise UnknownNameError(
        "decoder",
        text,
        registry,
        "Give a registered name, the path of a saved decoder (NAME.json), or clipcap:PATH.",
    )
