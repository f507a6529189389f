"""Tar-shard inputs and corrupt store shards."""

from __future__ import annotations

import io
import tarfile

import pytest
from PIL import Image

from t2c_captum import DataError, extract_features
from t2c_captum.data import open_source
from t2c_captum.features import FeatureStore
from t2c_captum.testing import FakeBackbone, FakeSpace


def write_tar_shards(folder, n_shards=2, per_shard=6):
    """Webdataset-style shards: KEY.png + KEY.cls per sample."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(folder / f"shard-{s:03d}.tar", "w") as tar:
            for i in range(per_shard):
                key = f"s{s}-{i:03d}"
                img = Image.new("RGB", (12, 12), (20 * i, 40 * s, 100))
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                for name, data in ((f"{key}.png", buf.getvalue()), (f"{key}.cls", str(i % 2).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder


def test_tar_shards_are_a_source_with_labels_and_extract_like_folders(tmp_path):
    folder = write_tar_shards(tmp_path / "tars")
    source = open_source(folder)
    assert len(source) == 12 and source.labels == [0, 1] * 6
    image, label = source.load(7)
    assert image.size == (12, 12) and label == 1 and image.getpixel((0, 0)) == (20, 40, 100)
    assert "shard-001.tar@" in source.describe(7)
    single = open_source(folder / "shard-000.tar")
    assert len(single) == 6 and single.fingerprint != source.fingerprint
    store = extract_features(
        folder, {"source": FakeBackbone(dim=5)}, store=tmp_path / "s", shard_size=5, progress=False
    )
    assert store.complete and store.load()["labels"].tolist() == [0, 1] * 6
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 64)
    with pytest.raises(DataError, match="not a readable tar shard"):
        open_source(tmp_path / "bad.tar")


def test_a_corrupt_shard_is_recorded_and_redone_or_an_error_under_strict(labelled_images, tmp_path):
    encoders = {"source": FakeBackbone(dim=5), "target": FakeSpace(dim=4)}
    store = extract_features(labelled_images, encoders, store=tmp_path / "s", shard_size=10, progress=False)
    before = store.load()
    store.shard_file(1).write_bytes(b"\x00" * 20)  # truncated / overwritten
    with pytest.raises(DataError, match="shard 1 .* is corrupt"):
        store.load()
    with pytest.raises(DataError, match=r"corrupt shard\(s\) \[1\]"):
        extract_features(
            labelled_images, encoders, store=tmp_path / "s", shard_size=10, progress=False, strict=True
        )
    with pytest.warns(UserWarning, match="extracted again"):
        again = extract_features(
            labelled_images, encoders, store=tmp_path / "s", shard_size=10, progress=False
        )
    assert again.manifest["corrupt"] == [1] and again.complete
    after = FeatureStore(tmp_path / "s").load()
    assert after["indices"].tolist() == before["indices"].tolist() == list(range(24))


def test_parquet_files_with_image_bytes_are_a_source(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet inputs need pyarrow (installed with the ray extra)")
    import pyarrow.parquet as pq

    blobs, labels = [], []
    for i in range(10):
        buf = io.BytesIO()
        Image.new("RGB", (10, 10), (25 * i, 0, 200)).save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": f"{i}.png"})  # Hugging Face's image struct
        labels.append(i % 3)
    table = pa.table({"image": blobs, "label": labels})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=4)  # 3 row groups
    source = open_source(tmp_path / "part-0.parquet")
    assert len(source) == 10 and source.labels == labels
    assert source.load(9)[0].getpixel((0, 0)) == (225, 0, 200) and source.load(2)[1] == 2
    assert "group2/row1" in source.describe(9)
    store = extract_features(tmp_path, {"source": FakeBackbone(dim=5)}, store=tmp_path / "s", shard_size=4,
                             num_workers=1, progress=False)
    assert store.complete and store.load()["labels"].tolist() == labels
    from t2c_captum.data import from_parquet

    with pytest.raises(DataError, match="no 'pixels' column"):
        from_parquet([tmp_path / "part-0.parquet"], column="pixels")
