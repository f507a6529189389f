from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import TensorDataset

from t2c_captum import DataError
from t2c_captum.data import from_csv, from_dataset, from_folder, iter_batches, open_source
from t2c_captum.testing import make_images


def test_image_folder_tree_is_labelled(labelled_images):
    source = open_source(labelled_images)
    assert source.class_names == ["cat", "dog", "fox"]
    assert len(source) == 24 and sorted(set(source.labels)) == [0, 1, 2]
    image, label = source[0]
    assert image.size == (32, 32) and label == 0


def test_flat_folder_is_unlabelled(tmp_path):
    make_images(tmp_path, n=5)
    source = open_source(tmp_path)
    assert len(source) == 5 and source.labels is None and source[0][1] == -1


def test_csv_with_header_and_relative_paths(tmp_path):
    paths = make_images(tmp_path / "imgs", n=4)
    (tmp_path / "list.csv").write_text(
        "path,label\n" + "\n".join(f"imgs/{p.name},{'a' if i % 2 else 'b'}" for i, p in enumerate(paths))
    )
    source = from_csv(tmp_path / "list.csv")
    assert source.class_names == ["a", "b"] and source.labels == [1, 0, 1, 0]
    (tmp_path / "plain.txt").write_text("\n".join(str(p) for p in paths))
    assert open_source(tmp_path / "plain.txt").labels is None


def test_any_dataset_of_tensors():
    ds = TensorDataset(torch.rand(6, 3, 8, 8), torch.arange(6) % 2)
    source = from_dataset(ds, class_names=["even", "odd"])
    image, label = source[3]
    assert image.size == (8, 8) and label == 1


def test_empty_folder_and_missing_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        from_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="neither"):
        open_source(tmp_path / "missing")


def test_fingerprint_changes_when_files_change(tmp_path):
    paths = make_images(tmp_path, n=3)
    before = open_source(tmp_path).fingerprint
    make_images(tmp_path, n=3, seed=5)  # same names, new contents
    import os

    os.utime(paths[0], ns=(1, 1))
    assert open_source(tmp_path).fingerprint != before


def test_unreadable_files_are_skipped_or_fail_under_strict(tmp_path):
    make_images(tmp_path, n=4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source = open_source(tmp_path)
    batches = list(iter_batches(source, [lambda im: torch.zeros(1)], [list(range(len(source)))]))
    assert len(batches[0].skipped) == 1 and batches[0].indices.numel() == 4
    with pytest.raises(DataError, match="broken.png"):
        list(iter_batches(source, [lambda im: torch.zeros(1)], [list(range(5))], strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
