"""Image sources and the decode-once loader."""

from __future__ import annotations

from .loader import (
    Batch,
    DecodeOnce,
    SplitPreprocess,
    decode_size,
    draft_size,
    iter_batches,
    split_preprocess,
    warn_skipped,
)
from .sources import (
    IMAGE_EXTENSIONS,
    ImageSource,
    from_csv,
    from_dataset,
    from_folder,
    from_image_folder,
    from_parquet,
    from_paths,
    from_tar,
    open_images,
    open_source,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "DecodeOnce",
    "ImageSource",
    "SplitPreprocess",
    "decode_size",
    "draft_size",
    "from_csv",
    "from_dataset",
    "from_folder",
    "from_image_folder",
    "from_parquet",
    "from_paths",
    "from_tar",
    "iter_batches",
    "open_images",
    "open_source",
    "split_preprocess",
    "warn_skipped",
]
