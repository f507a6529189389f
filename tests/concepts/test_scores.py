"""Concept scores: cosines through an aligner, top-k, summaries, and meaning on the concept world."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2c_captum import DimensionMismatchError
from t2c_captum.concepts import ConceptBank, concept_scores, summarize_scores, top_concepts


def _bank(rows, names=None):
    names = names or [f"c{i}" for i in range(len(rows))]
    return ConceptBank(names, torch.tensor(rows, dtype=torch.float32), "toy")


def test_scores_are_cosines_with_the_concepts():
    bank = _bank([[1, 0], [0, 1]], ["x", "y"])
    scores = concept_scores(torch.tensor([[2.0, 0.0], [1.0, 1.0]]), bank)
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.0], [0.7071, 0.7071]]), atol=1e-4, rtol=0)
    assert top_concepts(scores, bank, k=1) == [[("x", 1.0)], [pytest.approx(("x", 0.7071), abs=1e-4)]]


def test_an_aligner_maps_backbone_features_first():
    class Double(torch.nn.Module):
        target_ = {"id": "toy"}

        def forward(self, x):
            return torch.cat([x, -x], dim=1)

    bank = _bank([[1, 0], [0, 1]], ["x", "y"])
    scores = concept_scores(torch.tensor([[1.0]]), bank, Double())
    torch.testing.assert_close(scores, torch.tensor([[0.7071, -0.7071]]), atol=1e-4, rtol=0)
    with pytest.raises(DimensionMismatchError, match="pass aligner="):
        concept_scores(torch.ones(1, 3), bank)
    Double.target_ = {"id": "another-space"}
    with pytest.raises(DimensionMismatchError, match="embedded by 'toy'"):
        concept_scores(torch.tensor([[1.0]]), bank, Double())


def test_summary_from_chunks_equals_summary_of_the_whole():
    scores = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    whole = summarize_scores(scores, ["a", "b", "c", "d"], k=2)
    parts = summarize_scores([scores[:20], scores[20:]], ["a", "b", "c", "d"], k=2)
    np.testing.assert_allclose(whole.mean, scores.double().mean(0).numpy())
    np.testing.assert_allclose(parts.std, scores.double().std(0, unbiased=False).numpy(), atol=1e-9)
    assert whole.top_share.sum() == pytest.approx(2.0) and whole.n == parts.n == 50
    assert [r["concept"] for r in whole.ranked(by="mean", limit=4)] == [
        "abcd"[i] for i in np.argsort(-whole.mean)
    ]


# What each model's features carry (linear probes in docs/world-calibration.md): the tiny CLIP every
# factor, the shape-trained CNN shape, size and count, the autoencoder colour, size, background,
# position and count.
CARRIED = {
    "world-clip": {"shape", "colour", "pattern", "size", "background", "position", "count"},
    "world-cnn": {"shape", "size", "count"},
    "world-ae": {"colour", "size", "background", "position", "count"},
}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["world-clip", "world-cnn", "world-ae"])
def test_factor_words_score_higher_on_images_that_have_the_factor(world_aligned, model):
    from t2c_captum.features import extract_features
    from t2c_captum.world.adapters import world_concepts, world_source
    from t2c_captum.world.checks import factor_value_gaps

    bb, space, aligner = world_aligned("world-ae" if model == "world-clip" else model)
    encoder, aligner = (space, None) if model == "world-clip" else (bb, aligner)
    source = world_source("test", n=800)
    store = extract_features(source, {"source": encoder}, progress=False)
    bank = ConceptBank.from_vocabulary(space, "world")
    scores = concept_scores(store.load(["source"])["source"], bank, aligner)
    gaps = factor_value_gaps(scores, bank, source.items.samples)
    failures, checked = [], 0
    for concept, (factor, _) in world_concepts().items():
        if factor not in CARRIED[model]:
            continue
        checked += 1
        if gaps[concept] <= 0:
            failures.append((concept, round(gaps[concept], 3)))
    assert checked >= 11 and not failures


@pytest.mark.slow
def test_contrast_scores_of_the_backbone_that_learnt_every_factor_rank_every_value(world_aligned):
    # by raw cosine world-vit's "small" reads higher on large objects (a shared offset, docs/concepts.md);
    # the margin over each concept's alternatives cancels it
    from t2c_captum.concepts import contrast_scores
    from t2c_captum.features import extract_features
    from t2c_captum.world.adapters import world_source
    from t2c_captum.world.checks import factor_value_gaps

    bb, space, aligner = world_aligned("world-vit")
    source = world_source("test", n=800)
    store = extract_features(source, {"source": bb}, progress=False)
    bank = ConceptBank.from_vocabulary(space, "world")
    scores = contrast_scores(concept_scores(store.load(["source"])["source"], bank, aligner), bank)
    gaps = factor_value_gaps(scores, bank, source.items.samples)
    assert len(gaps) == 31 and min(gaps.values()) > 0.03, sorted(gaps.items(), key=lambda kv: kv[1])[:3]


@pytest.mark.slow
def test_concepts_command_names_the_colours_of_world_images(world_aligned, tmp_path):
    from t2c_captum.cli import app

    _, _, aligner = world_aligned("world-ae")
    aligner.save(tmp_path / "ae")
    result = CliRunner().invoke(
        app, ["concepts", str(tmp_path / "ae"), "--data", "world:test:colour:60", "-k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    import json

    out = json.loads(result.output[result.output.index("{"):])
    assert out["n"] == 60 and len(out["images"]) == 10 and len(out["images"][0]["top"]) == 3
    bad = CliRunner().invoke(app, ["concepts", str(tmp_path / "ae"), "--data", "world:test",
                                   "--concepts", "red,red"])
    assert bad.exit_code == 2 and "repeats" in bad.output
