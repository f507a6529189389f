"""Store keys true to the content of in-memory data: equal content shares a store, any different
item gets its own (issue 23: two Datasets equal in their first, middle and last image shared one)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import Dataset

from t2c_captum import extract_features
from t2c_captum.data import ImageSource, from_dataset, open_source
from t2c_captum.testing import FakeBackbone


class ArrayDataset(Dataset):
    """Images as uint8 arrays with labels, as a user's in-memory dataset."""

    def __init__(self, images, labels=None):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return (self.images[i], self.labels[i]) if self.labels is not None else self.images[i]


def _images(n=20, seed=0, size=8):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_datasets_equal_in_first_middle_and_last_image_get_different_stores():
    first = _images()
    second = [im.copy() for im in first]
    for i in (1, 2, 3, 5, 7):
        second[i] = 255 - second[i]
    bb = FakeBackbone(dim=6)
    a = extract_features(ArrayDataset(first), {"source": bb}, batch_size=8, progress=False)
    b = extract_features(ArrayDataset(second), {"source": bb}, batch_size=8, progress=False)
    assert a.path != b.path
    alone = extract_features(ArrayDataset(second[1:2]), {"source": bb}, progress=False)
    torch.testing.assert_close(b.load()["source"][1], alone.load()["source"][0])
    again = extract_features(ArrayDataset([im.copy() for im in first]), {"source": bb}, progress=False)
    assert again.path == a.path  # equal content: reused


def test_lists_of_arrays_tensors_and_pil_images_are_keyed_by_content():
    images = _images(6)
    same = [im.copy() for im in images]
    assert ImageSource(images).fingerprint == ImageSource(same).fingerprint  # other objects, same bytes
    tensors = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
    assert ImageSource(tensors).fingerprint == ImageSource([t.clone() for t in tensors]).fingerprint
    pils = [Image.fromarray(im) for im in images]
    assert ImageSource(pils).fingerprint == ImageSource([Image.fromarray(im) for im in same]).fingerprint
    source = ImageSource(images)
    before = source.fingerprint
    images[4][0, 0, 0] ^= 1  # changed in place: the same source object notices
    assert source.fingerprint != before
    assert ImageSource(images, labels=[0] * 6).fingerprint != ImageSource(images, labels=[1] * 6).fingerprint


def test_a_named_key_skips_hashing_and_datasets_are_read_once_per_source():
    reads = []

    class Counting(ArrayDataset):
        def __getitem__(self, i):
            reads.append(i)
            return super().__getitem__(i)

    named = from_dataset(Counting(_images(5)), fingerprint="my-key")
    assert named.fingerprint == "my-key" and not reads
    source = open_source(Counting(_images(5)))
    first = source.fingerprint
    assert source.fingerprint == first and sorted(reads) == list(range(5))  # every item, once


pixels = st.tuples(st.integers(0, 9), st.integers(0, 7), st.integers(0, 7), st.integers(0, 2),
                   st.integers(1, 255))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), change=pixels, as_tensor=st.booleans())
def test_property_one_different_item_never_shares_a_key_equal_content_always_does(seed, change, as_tensor):
    item, row, col, channel, delta = change
    base = _images(10, seed=seed)
    twin = [im.copy() for im in base]
    other = [im.copy() for im in base]
    other[item][row, col, channel] = (int(other[item][row, col, channel]) + delta) % 256
    wrap = (lambda ims: [torch.from_numpy(im) for im in ims]) if as_tensor else (lambda ims: ims)
    key = open_source(ArrayDataset(wrap(base))).fingerprint
    assert open_source(ArrayDataset(wrap(twin))).fingerprint == key
    assert open_source(ArrayDataset(wrap(other))).fingerprint != key
    assert ImageSource(wrap(other)).fingerprint != ImageSource(wrap(base)).fingerprint


def test_labels_of_dataset_items_are_part_of_the_key():
    images = _images(4)
    a = open_source(ArrayDataset(images, [0, 1, 2, 3])).fingerprint
    assert open_source(ArrayDataset(images, [3, 2, 1, 0])).fingerprint != a


def _net(seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3))


def test_models_of_one_architecture_with_other_weights_never_share_a_store():
    """Two checkpoints of the same architecture, and one model changed in place after a first run:
    each gets its own store and its own features; the same weights again reuse the store."""
    from t2c_captum import module_backbone

    images = _images(6, size=16)
    source = open_source(ArrayDataset(images))

    def extract(model):
        bb = module_backbone(model, layer="2", input_size=(3, 16, 16), preprocess=_to_tensor16)
        store = extract_features(source, {"source": bb}, batch_size=3, progress=False)
        with torch.no_grad():
            truth = torch.stack([bb(_to_tensor16(Image.fromarray(im))[None])[0] for im in images])
        return store, truth

    a, truth_a = extract(_net(0))
    b, truth_b = extract(_net(1))
    assert a.path != b.path
    torch.testing.assert_close(b.load()["source"], truth_b)
    assert extract(_net(0))[0].path == a.path  # same weights, another instance: reused
    tuned = _net(0)
    with torch.no_grad():
        tuned[0].weight.mul_(2)  # fine-tuned in place: the tensors' versions move
    c, truth_c = extract(tuned)
    assert c.path not in (a.path, b.path)
    torch.testing.assert_close(c.load()["source"], truth_c)
    tuned.load_state_dict(_net(0).state_dict())  # and back
    assert extract(tuned)[0].path == a.path
    assert not torch.allclose(truth_a, truth_b)


def _to_tensor16(image):
    pixels = np.asarray(image.convert("RGB").resize((16, 16)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)


def test_concept_banks_of_spaces_with_other_weights_are_not_shared(tmp_path):
    from t2c_captum.concepts import ConceptBank
    from t2c_captum.testing import FakeSpace

    first = ConceptBank.build(FakeSpace(seed=1), ["red", "blue"], cache_dir=tmp_path)
    other = ConceptBank.build(FakeSpace(seed=2), ["red", "blue"], cache_dir=tmp_path)
    assert not torch.allclose(first.embeddings, other.embeddings)
    torch.testing.assert_close(other.embeddings, ConceptBank.build(FakeSpace(seed=2), ["red", "blue"],
                                                                    cache=False).embeddings)
    assert len(list(tmp_path.glob("bank-*"))) == 2
