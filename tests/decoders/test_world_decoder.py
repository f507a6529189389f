"""The world recipe means something: captions of the tiny CLIP's image embeddings name what is there."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_world_decoder_names_shape_and_colour_and_a_shift(tmp_path):
    from t2c_captum.features import extract_features
    from t2c_captum.spaces import load_space
    from t2c_captum.world.adapters import world_source
    from t2c_captum.world.decoder import caption_accuracy, world_decoder, world_shift_captions
    from t2c_captum.world.tasks import SHIFT_TASKS

    decoder = world_decoder(cache_dir=str(tmp_path / "dec"))
    assert (tmp_path / "dec" / "decoder.json").is_file()
    assert world_decoder(cache_dir=str(tmp_path / "dec")).training_stats == decoder.training_stats  # cached
    space = load_space("world-clip")
    source = world_source("test", n=200)
    emb = extract_features(source, {"space": space}, progress=False).load(["space"])["space"]
    acc = caption_accuracy(decoder.decode(emb), source.items.samples)
    assert acc["all"] >= 0.85, acc  # measured about 0.97 on 1000 test images (docs/decoder.md)
    tasks = [t for t in SHIFT_TASKS if t.name in ("pattern=striped@0.9", "background=noisy@0.9")]
    rows = world_shift_captions(decoder, space, None, tasks, n=200)
    assert len(rows) == 2 and all(row["named"] for row in rows), rows
