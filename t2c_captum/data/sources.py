"""Image sources: folders, labelled trees, path lists/CSVs and any torch Dataset, behind one interface."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .._exceptions import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "from_csv",
    "from_dataset",
    "from_folder",
    "from_image_folder",
    "from_parquet",
    "from_paths",
    "from_tar",
    "open_source",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


#: ``(width, height)``: the least size a JPEG decoded at reduced scale must keep
Draft = tuple[int, int]


def _decoded(img: Image.Image, draft: Draft | None) -> Image.Image:
    """``img`` decoded to RGB; a JPEG at the smallest of 1/2, 1/4 or 1/8 scale that keeps it at
    least ``draft`` in both sides, when ``draft`` is given (PIL's ``Image.draft``)."""
    if draft is not None and img.format == "JPEG":
        img.draft("RGB", draft)
    return img.convert("RGB")


def _to_pil(obj: Any, draft: Draft | None = None) -> Image.Image:
    if isinstance(obj, Image.Image):
        return obj.convert("RGB")
    if isinstance(obj, (str, os.PathLike)):
        with Image.open(obj) as img:
            return _decoded(img, draft)
    if isinstance(obj, torch.Tensor):
        from torchvision.transforms.functional import to_pil_image

        return to_pil_image(obj).convert("RGB")
    if isinstance(obj, np.ndarray):
        return Image.fromarray(obj).convert("RGB")
    if isinstance(obj, (TarMember, ParquetImage)):
        import io

        with Image.open(io.BytesIO(obj.read())) as img:
            return _decoded(img, draft)
    raise DataError(f"cannot turn a {type(obj).__name__} into an image")


class ImageSource(Dataset):
    """Images with optional integer labels; ``source[i]`` is ``(PIL image, label)`` (label -1 if none).

    Build one with :func:`open_source`, :func:`from_folder`, :func:`from_image_folder`,
    :func:`from_paths`, :func:`from_csv` or :func:`from_dataset`.
    """

    def __init__(
        self,
        items: Sequence[Any] | Dataset,
        labels: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "images",
        fingerprint: str | None = None,
        templates: Sequence[str] | None = None,
        task: str | None = None,
        class_prompts: dict[str, list[str]] | None = None,
    ) -> None:
        if len(items) == 0:  # type: ignore[arg-type]
            raise DataError(f"{name}: no images found; check the path and the file extensions")
        if labels is not None and len(labels) != len(items):  # type: ignore[arg-type]
            raise DataError(f"{name}: {len(labels)} labels for {len(items)} images")  # type: ignore[arg-type]
        self.items = items
        self.labels = list(labels) if labels is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name
        self._fingerprint = fingerprint
        self._dataset_hash: bytes | None = None
        #: prompt templates suited to these labels (e.g. a concept-world factor), if known
        self.templates = list(templates) if templates else None
        #: what the labels mean (e.g. ``"shape"``), if known
        self.task = task
        #: class name -> full prompts describing it, if the dataset knows better than templates
        self.class_prompts = class_prompts

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def describe(self, index: int) -> str:
        """A human-readable pointer to item ``index`` (its path when it has one)."""
        item = self.items[index]
        pointer = (str, os.PathLike, TarMember, ParquetImage)
        return str(item) if isinstance(item, pointer) else f"{self.name}[{index}]"

    def load(self, index: int, draft: Draft | None = None) -> tuple[Image.Image, int]:
        """Decode item ``index``; raises on unreadable files. With ``draft`` (``(width,
        height)``), a JPEG file is decoded at the smallest reduced scale that keeps it at least
        that large (images already in memory are returned as they are)."""
        item = self.items[index]
        label = self.labels[index] if self.labels is not None else -1
        if isinstance(self.items, Dataset) and isinstance(item, tuple):
            item, label = item[0], int(item[1]) if len(item) > 1 else -1
        return _to_pil(item, draft), int(label)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.load(index)

    @property
    def fingerprint(self) -> str:
        """A hash of what the source holds: files by path, size and modification time; images in
        memory (arrays, tensors, PIL images) by every item's bytes; a torch ``Dataset`` by every
        item it returns; and the labels.

        Files and in-memory items are hashed again at every call (so an array changed in place
        gets a new fingerprint); a ``Dataset`` is read once per source, since reading it may decode
        every image: build a new source (or give ``fingerprint=``) after changing its contents.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        # (sha256 over the same text as before for files: their stores keep their keys)
        digest = hashlib.sha256(f"{self.name}|{len(self)}".encode())
        if isinstance(self.items, Dataset):
            if self._dataset_hash is None:
                self._dataset_hash = _dataset_hash(self.items, len(self))
            digest.update(self._dataset_hash)
        else:
            for item in self.items:
                _feed(digest, item)
        if self.labels is not None:
            digest.update(repr(self.labels).encode())
        return digest.hexdigest()[:16]


def _feed(digest: Any, item: Any) -> None:
    """Add what determines ``item``'s pixels to ``digest``: a file's path, size and modification
    time; the bytes of an array, tensor or PIL image; each part of a tuple (image, label, ...)."""
    if isinstance(item, (str, os.PathLike)):
        try:
            stat = os.stat(item)
            digest.update(f"{os.fspath(item)}|{stat.st_size}|{stat.st_mtime_ns};".encode())
        except OSError:
            digest.update(f"{os.fspath(item)}|missing;".encode())
    elif isinstance(item, np.ndarray):
        digest.update(f"array|{item.dtype.str}|{item.shape};".encode())
        digest.update(np.ascontiguousarray(item).view(np.uint8).data)
    elif isinstance(item, torch.Tensor):
        flat = item.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor|{item.dtype}|{tuple(item.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    elif isinstance(item, Image.Image):
        digest.update(f"pil|{item.mode}|{item.size};".encode())
        digest.update(item.tobytes())
    elif isinstance(item, (tuple, list)):
        digest.update(f"seq|{len(item)};".encode())
        for part in item:
            _feed(digest, part)
    elif isinstance(item, dict):
        digest.update(f"dict|{sorted(map(str, item))};".encode())
        for key in sorted(item, key=str):
            _feed(digest, item[key])
    elif isinstance(item, (int, float, bool, type(None), TarMember, ParquetImage)):
        digest.update(f"{type(item).__name__}|{item!r};".encode())
    else:  # anything else an image can be made of: its decoded pixels
        _feed(digest, _to_pil(item))


def _dataset_hash(dataset: Dataset, n: int) -> bytes:
    """A hash of every item of ``dataset`` (an unreadable item is hashed as such: the extraction
    reports it)."""
    digest = hashlib.sha256()
    for i in range(n):
        try:
            item = dataset[i]
        except Exception as exc:
            digest.update(f"unreadable {i}: {type(exc).__name__};".encode())
            continue
        _feed(digest, item)
    return digest.digest()


def from_folder(path: str | os.PathLike[str], recursive: bool = True) -> ImageSource:
    """All image files under ``path`` (sorted), unlabelled."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a directory")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in root.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(
            f"no images in {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)}); check the path"
        )
    return ImageSource([str(f) for f in files], name=str(root))


def from_image_folder(path: str | os.PathLike[str]) -> ImageSource:
    """An ImageFolder-style tree: one sub-directory per class (torchvision's own conventions)."""
    from torchvision.datasets.folder import find_classes, make_dataset

    root = str(path)
    try:
        classes, class_to_idx = find_classes(root)
        samples = make_dataset(root, class_to_idx, extensions=IMAGE_EXTENSIONS)
    except FileNotFoundError as exc:
        raise DataError(f"{root!r} is not a labelled image tree: {exc}") from exc
    return ImageSource([p for p, _ in samples], [y for _, y in samples], classes, name=root)


def from_paths(
    paths: Sequence[str | os.PathLike[str]],
    labels: Sequence[int | str] | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "paths",
) -> ImageSource:
    """A list of image paths with optional labels (ints, or strings turned into sorted classes)."""
    int_labels, names = _encode_labels(labels, class_names)
    return ImageSource([os.fspath(p) for p in paths], int_labels, names, name=name)


def _encode_labels(
    labels: Sequence[int | str] | None, class_names: Sequence[str] | None
) -> tuple[list[int] | None, list[str] | None]:
    if labels is None:
        return None, list(class_names) if class_names else None
    if all(isinstance(y, int) or (isinstance(y, str) and y.lstrip("-").isdigit()) for y in labels):
        return [int(y) for y in labels], list(class_names) if class_names else None
    names = list(class_names) if class_names else sorted({str(y) for y in labels})
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({str(y) for y in labels} - set(index))
    if unknown:
        raise DataError(f"labels {unknown[:5]} are not in class_names")
    return [index[str(y)] for y in labels], names


def from_csv(path: str | os.PathLike[str]) -> ImageSource:
    """A CSV/TSV (or plain list) of paths with an optional label column.

    A header row with a ``path`` column (and optionally ``label``) is used when present; otherwise the
    first column is the path and the second, if any, the label. Relative paths are relative to the
    file's folder.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{str(file)!r} does not exist")
    text = file.read_text(encoding="utf-8")
    dialect = csv.excel_tab if file.suffix == ".tsv" else csv.excel
    rows = [r for r in csv.reader(text.splitlines(), dialect) if r and r[0].strip()]
    if not rows:
        raise DataError(f"{str(file)!r} lists no images")
    header = [c.strip().lower() for c in rows[0]]
    path_col, label_col = 0, 1 if len(rows[0]) > 1 else None
    if "path" in header:
        rows = rows[1:]
        path_col = header.index("path")
        label_col = header.index("label") if "label" in header else None
    paths = [_resolve(file.parent, r[path_col].strip()) for r in rows]
    labels = [r[label_col].strip() for r in rows] if label_col is not None else None
    return from_paths(paths, labels, name=str(file))


def _resolve(base: Path, value: str) -> str:
    p = Path(value)
    return str(p if p.is_absolute() else base / p)


def from_dataset(
    dataset: Dataset,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    fingerprint: str | None = None,
) -> ImageSource:
    """Any torch Dataset whose items are images or ``(image, label)`` pairs.

    Its feature stores are keyed by a hash of every item it returns (read once per source), unless
    a key is named: ``fingerprint=`` or a ``fingerprint`` attribute (or method) of the dataset. Name
    one for a dataset that decodes files on every read, and change it when the contents change.
    """
    if isinstance(dataset, ImageSource):
        return dataset
    names = class_names or getattr(dataset, "class_names", None) or getattr(dataset, "classes", None)
    if fingerprint is None:
        fingerprint = getattr(dataset, "fingerprint", None)
    if callable(fingerprint):
        fingerprint = fingerprint()
    return ImageSource(
        dataset,
        class_names=names,
        name=name or type(dataset).__name__,
        fingerprint=str(fingerprint) if fingerprint else None,
        templates=getattr(dataset, "templates", None),
        task=getattr(dataset, "task", None),
        class_prompts=_attr_or_call(dataset, "class_prompts"),
    )


def _attr_or_call(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    return value() if callable(value) else value


def _scheme_opener(scheme: str) -> Any:
    """The opener a plugin registered for ``SCHEME:`` specs (``register_sources``), if any."""
    from ..plugins import get_registries

    sources = get_registries().sources
    return sources.get(scheme) if scheme in sources else None


def _schemes() -> list[str]:
    from ..plugins import get_registries

    return sorted(get_registries().sources.names())


def open_source(spec: str | os.PathLike[str] | Dataset | ImageSource, **options: Any) -> ImageSource:
    """An image source from a path or dataset.

    ``SCHEME:REST`` goes to the opener a plugin registered for SCHEME (``register_sources``; the
    concept world's ``world:SPLIT[:FACTOR[:N]]`` is one: labels from FACTOR, default shape; the
    first N images); a ``.csv``,
    ``.tsv`` or ``.txt`` file is a path list; a directory whose sub-directories hold the images is
    an ImageFolder tree (labelled), any other directory is read as unlabelled images.
    """
    if isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, Dataset):
        return from_dataset(spec, **options)
    text = os.fspath(spec)
    scheme, colon, rest = text.partition(":")
    if colon and not Path(text).exists():
        opener = _scheme_opener(scheme)
        if opener is not None:
            return opener(rest, **options)
    path = Path(text)
    if path.is_file() and path.suffix == ".tar":
        return from_tar([path])
    if path.is_file() and path.suffix == ".parquet":
        return from_parquet([path])
    if path.is_file():
        return from_csv(path)
    if path.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir()):
        tars = sorted(p for p in path.iterdir() if p.suffix == ".tar")
        if tars:
            return from_tar(tars)
        parquets = sorted(p for p in path.iterdir() if p.suffix == ".parquet")
        if parquets:
            return from_parquet(parquets)
    if not path.is_dir():
        raise DataError(
            f"{text!r} is neither a file, a directory nor a registered SCHEME:... spec "
            f"({', '.join(f'{name}:' for name in _schemes()) or 'none registered'})"
        )
    top_images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    has_class_dirs = any(p.is_dir() for p in path.iterdir())
    if has_class_dirs and not top_images:
        return from_image_folder(path)
    return from_folder(path)


class TarMember:
    """One image inside a tar shard: read by offset, so no archive is unpacked or kept open."""

    __slots__ = ("offset", "size", "tar")

    def __init__(self, tar: str, offset: int, size: int) -> None:
        self.tar, self.offset, self.size = tar, offset, size

    def read(self) -> bytes:
        with open(self.tar, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.size)

    def __repr__(self) -> str:
        return f"{self.tar}@{self.offset}"


def from_tar(paths: Sequence[str | os.PathLike[str]]) -> ImageSource:
    """Images in webdataset-style tar shards: members sharing a key (the name without its
    extension) form one sample; its image is the first member with an image extension and its
    label, when present, the integer in its ``.cls`` member. Samples keep the shards' order."""
    import tarfile

    items: list[TarMember] = []
    labels: list[int] = []
    digest = hashlib.sha256()
    for tar_path in (os.fspath(p) for p in paths):
        if not os.path.isfile(tar_path):
            raise DataError(f"tar shard {tar_path!r} does not exist")
        stat = os.stat(tar_path)
        digest.update(f"{tar_path}|{stat.st_size}|{stat.st_mtime_ns};".encode())
        samples: dict[str, dict[str, Any]] = {}
        try:
            with tarfile.open(tar_path, "r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.partition(".")
                    sample = samples.setdefault(key, {})
                    if f".{ext.lower()}" in IMAGE_EXTENSIONS and "image" not in sample:
                        sample["image"] = TarMember(tar_path, member.offset_data, member.size)
                    elif ext == "cls":
                        fh = tar.extractfile(member)
                        text = fh.read().decode().strip() if fh is not None else ""
                        sample["label"] = int(text) if text.lstrip("-").isdigit() else -1
        except tarfile.TarError as exc:
            raise DataError(
                f"{tar_path!r} is not a readable tar shard ({exc}); re-create or remove it"
            ) from exc
        for sample in samples.values():
            if "image" in sample:
                items.append(sample["image"])
                labels.append(int(sample.get("label", -1)))
    labelled = any(y >= 0 for y in labels)
    name = os.fspath(paths[0]) if len(paths) == 1 else f"{len(paths)} tar shards"
    return ImageSource(items, labels if labelled else None, name=name, fingerprint=digest.hexdigest()[:16])


class ParquetImage:
    """One image's bytes in a Parquet file: (file, row group, row in it, column); read lazily, one
    row group cached per process (batches are consecutive rows, so decoding reads each group once)."""

    __slots__ = ("column", "group", "path", "row")
    _cache: ClassVar[dict[tuple[str, int, str], list[Any]]] = {}

    def __init__(self, path: str, group: int, row: int, column: str) -> None:
        self.path, self.group, self.row, self.column = path, group, row, column

    def read(self) -> bytes:
        key = (self.path, self.group, self.column)
        if key not in ParquetImage._cache:
            import pyarrow.parquet as pq

            values = pq.ParquetFile(self.path).read_row_group(self.group, columns=[self.column])
            ParquetImage._cache.clear()
            ParquetImage._cache[key] = values.column(0).to_pylist()
        value = ParquetImage._cache[key][self.row]
        return value["bytes"] if isinstance(value, dict) else value

    def __repr__(self) -> str:
        return f"{self.path}#group{self.group}/row{self.row}"


def from_parquet(
    paths: Sequence[str | os.PathLike[str]], column: str = "image", label_column: str | None = "label"
) -> ImageSource:
    """Images stored as bytes in Parquet files (``column``: binary, or a struct with ``bytes`` as
    Hugging Face datasets write it), with integer labels from ``label_column`` when present.
    Needs ``pyarrow`` (installed with ``t2c_captum[ray]``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading Parquet needs pyarrow: pip install pyarrow (or 't2c_captum[ray]')") from exc
    items: list[ParquetImage] = []
    labels: list[int] = []
    digest = hashlib.sha256()
    for path in (os.fspath(p) for p in paths):
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{column};".encode())
        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:
            raise DataError(f"{path!r} is not a readable Parquet file ({exc})") from exc
        names = meta.schema_arrow.names
        if column not in names:
            raise DataError(f"{path!r} has no {column!r} column (it has {names}); pass column=...")
        for group in range(meta.num_row_groups):
            n = meta.metadata.row_group(group).num_rows
            items.extend(ParquetImage(path, group, row, column) for row in range(n))
        if label_column and label_column in names:
            labels.extend(int(y) if y is not None else -1 for y in meta.read(columns=[label_column]).column(0)
                          .to_pylist())
        else:
            labels.extend([-1] * meta.metadata.num_rows)
    labelled = any(y >= 0 for y in labels)
    name = os.fspath(paths[0]) if len(paths) == 1 else f"{len(paths)} parquet files"
    return ImageSource(items, labels if labelled else None, name=name, fingerprint=digest.hexdigest()[:16])


def open_images(items: Sequence[str]) -> ImageSource:
    """Command-line image arguments as a source: several image files, or one folder, list or
    ``world:SPLIT`` spec."""
    files = [p for p in items if Path(p).is_file() and not p.endswith((".csv", ".txt", ".tsv"))]
    if files and len(files) == len(items):
        return from_paths(files)
    if not items:
        raise DataError("give at least one image, folder, list file or world:SPLIT")
    return open_source(items[0])
