"""The Captum bridge: probes that Captum can explain, named attributions, text CAVs, unit names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from t2c_captum import DataError, DimensionMismatchError, LinearAligner, T2CError, UnknownNameError
from t2c_captum.concepts import ConceptBank
from t2c_captum.explain import (
    ConceptProbe,
    attribute_concept,
    feature_attributions,
    inplace_modules,
    name_difference,
    name_directions,
    name_units,
    text_cav,
    without_inplace,
)
from t2c_captum.testing import FakeBackbone


def _toy(n_classes: int = 3):
    """A backbone, an aligner fitted on it to a random linear 'space', and a bank of 4 concepts."""
    gen = torch.Generator().manual_seed(0)
    backbone = FakeBackbone(dim=12, n_classes=n_classes)
    x = torch.randn(400, 3, 8, 8, generator=gen)
    with torch.no_grad():
        f = backbone(x)
    M = torch.randn(12, 6, generator=gen)
    aligner = LinearAligner().fit(f, f @ M)
    bank = ConceptBank(["a", "b", "c", "d"], torch.randn(4, 6, generator=gen), "toy")
    return backbone, aligner, bank, x, f


def test_probe_outputs_cosines_and_any_captum_method_explains_it():
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    backbone, aligner, bank, x, f = _toy()
    probe = ConceptProbe(backbone, aligner, bank, ["b", "d"])
    out = probe(x[:5])
    z = nn.functional.normalize(aligner.transform(f[:5]), dim=-1)
    torch.testing.assert_close(out, z @ bank.embeddings[[1, 3]].T, atol=1e-5, rtol=0)
    for method in (IntegratedGradients(probe), Saliency(probe)):
        attr = method.attribute(x[:5].clone().requires_grad_(), target=probe.target("d"))
        assert attr.shape == x[:5].shape and attr.abs().sum() > 0
    occ = Occlusion(probe).attribute(x[:2], target=0, sliding_window_shapes=(3, 2, 2))
    assert occ.shape == x[:2].shape


def test_integrated_gradients_maps_sum_to_the_change_in_concept_score():
    backbone, aligner, bank, x, _ = _toy()
    probe = ConceptProbe(backbone, aligner, bank, ["a"])
    # (a zero baseline would sit where the cosine is not smooth: this toy is linear through 0)
    maps = attribute_concept(probe, x[:4], "a", "integrated_gradients", n_steps=64, baselines=x[4:8])
    with torch.no_grad():
        delta = probe(x[:4])[:, 0] - probe(x[4:8])[:, 0]
    torch.testing.assert_close(maps.raw.flatten(1).sum(1), delta, atol=2e-2, rtol=0)
    assert maps.maps.shape == (4, 8, 8) and (maps.maps >= 0).all()


def test_mass_inside_and_pointing_game_read_the_maps():
    from t2c_captum.explain import ConceptMaps

    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[1, 3, 3], maps[1, 0, 0] = 3.0, 1.0, 1.0
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    result = ConceptMaps("x", "test", maps, maps[:, None])
    assert result.mass_inside(mask).tolist() == [1.0, 0.5]
    assert result.pointing_game(mask).tolist() == [True, True]
    mask[1] = False
    mask[1, 1, 1] = True
    assert result.pointing_game(mask).tolist() == [True, False]
    assert result.pointing_game(mask, tolerance=2).tolist() == [True, True]


def test_probe_errors_are_clear():
    backbone, aligner, bank, x, _ = _toy()
    with pytest.raises(UnknownNameError, match="concept"):
        ConceptProbe(backbone, aligner, bank, ["zebra"])
    probe = ConceptProbe(backbone, aligner, bank)
    with pytest.raises(UnknownNameError):
        probe.target("zebra")
    with pytest.raises(DataError, match="outside"):
        probe.target(9)
    with pytest.raises(DimensionMismatchError, match="give the aligner"):
        ConceptProbe(backbone, None, bank)(x[:1])
    with pytest.raises(UnknownNameError, match="attribution method"):
        attribute_concept(probe, x[:1], "a", "magic")
    with pytest.raises(DataError, match="layer="):
        attribute_concept(probe, x[:1], "a", "gradcam")


def test_in_place_activations_are_copied_off_or_refused():
    from captum.attr import LayerActivation

    from t2c_captum.backbones import ModuleBackbone

    # in-place ops trip some Captum methods (backward hooks on modules whose outputs are
    # overwritten); the probe explains a copy with them turned off, the user's model stays as it is
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 3))
    assert inplace_modules(model) == ["1"]
    backbone = ModuleBackbone(model, "toy-conv", lambda im: im, input_size=(3, 16, 16))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, 16, 16, generator=gen)
    with torch.no_grad():
        f = backbone(x)
    aligner = LinearAligner().fit(f, f[:, :6] * 2 + 1)
    bank = ConceptBank(["a", "b"], torch.randn(2, 6, generator=gen), "toy")
    with pytest.raises(T2CError, match="in place"):
        ConceptProbe(backbone, aligner, bank, inplace="error")
    probe = ConceptProbe(backbone, aligner, bank)
    assert not inplace_modules(probe.backbone) and inplace_modules(model) == ["1"]  # user's model untouched
    conv = probe.backbone.model[0]
    seen = LayerActivation(probe, conv).attribute(x[:2])
    torch.testing.assert_close(seen, conv(x[:2]))
    assert (seen < 0).any()
    assert ConceptProbe(backbone, aligner, bank, inplace="keep").backbone is backbone
    assert not inplace_modules(without_inplace(model))


def test_feature_attributions_of_a_linear_head_are_weight_times_displacement():
    backbone, aligner, bank, _, f = _toy()
    target = torch.tensor([0, 2, 1, 1])
    attr = feature_attributions(backbone, f[:4], target, baseline="zero")
    torch.testing.assert_close(attr, backbone.head.weight[target] * f[:4], atol=1e-4, rtol=0)
    with pytest.raises(DataError, match="outside"):
        feature_attributions(backbone, f[:4], 7)
    with pytest.raises(T2CError, match="no head|has none"):
        feature_attributions(FakeBackbone(dim=12), f[:4], 0)


def test_a_direction_is_named_by_the_concept_it_moves_towards():
    backbone, aligner, bank, _, f = _toy()
    # the feature direction that moves the aligned embedding straight towards concept "c"
    direction = torch.linalg.pinv(aligner.linear_part) @ bank.vector("c")
    assert name_directions(direction, aligner, bank, 1, centre=False)[0][0][0] == "c"
    cav = text_cav(aligner, bank, "c")
    torch.testing.assert_close(cav, aligner.linear_part.T @ bank.vector("c"))
    with pytest.raises(DimensionMismatchError, match="12-d features"):
        name_directions(torch.ones(5), aligner, bank)


def test_a_difference_of_groups_is_named_by_what_one_has_more_of():
    backbone, aligner, bank, _, f = _toy()
    towards_c = torch.linalg.pinv(aligner.linear_part) @ bank.vector("c")
    shifted = f[:100] + 3 * towards_c / towards_c.norm()  # group A: group B moved towards "c"
    named = name_difference(shifted, f[:100], aligner, bank, k=2)
    assert named["a_over_b"][0][0] == "c"
    assert "c" not in [c for c, _ in named["b_over_a"]]
    assert len(named["a_over_b"]) == len(named["b_over_a"]) == 2
    with pytest.raises(DimensionMismatchError, match="12-d features"):
        name_difference(torch.ones(3, 5), torch.ones(3, 5), aligner, bank)


def test_units_are_named_through_the_aligner_and_from_examples():
    backbone, aligner, bank, _, f = _toy()
    named = name_units(aligner, bank, probe_features=f, k=2)
    assert len(named.by_aligner) == 12 and len(named.by_examples) == 12 and 0 <= named.agreement <= 1
    with pytest.raises(DataError, match="units must be"):
        name_units(aligner, bank, units=[99])
    with pytest.raises(DataError, match="at least 20"):
        name_units(aligner, bank, probe_features=f[:5])


def test_a_prediction_is_named_by_the_concept_present_in_the_image_that_pushes_its_logit():
    from t2c_captum.explain import explain_predictions

    gen = torch.Generator().manual_seed(3)
    backbone = FakeBackbone(dim=4, n_classes=2)
    f = torch.randn(300, 4, generator=gen)
    aligner = LinearAligner(alpha=1e-6).fit(f, f)  # an identity map into a 4-d "space"
    names = ["w", "x", "y", "z", "no w", "no x", "no y", "no z"]
    bank = ConceptBank(names, torch.cat([torch.eye(4), -torch.eye(4)]), "toy")
    with torch.no_grad():
        backbone.head.weight.copy_(torch.tensor([[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, -3.0, 0.0]]))
    images = f.mean(0) + torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, -2.0, 0.0], [1.5, 0.0, 0.0, 0.0]])
    named = explain_predictions(backbone, torch.cat([images, f]), aligner, bank, k=1)
    # image 0 is class 0 because it has much "y", image 1 is class 1 because it has "no y";
    # image 2 differs from the average only by "w", which the head ignores: nothing is named
    assert named[0][0][0] == "y" and named[0][0][1] > 0.5
    assert named[1][0][0] == "no y" and named[1][0][1] > 0.5
    assert named[2][0][1] == pytest.approx(0.0, abs=0.05)


def _tcav_toy():
    """A linear classifier whose class-0 logit reads only feature 'y', aligned by identity."""
    gen = torch.Generator().manual_seed(5)
    backbone = FakeBackbone(dim=4, n_classes=2)
    with torch.no_grad():
        backbone.head.weight.copy_(torch.tensor([[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, -3.0, 0.0]]))
        probe = backbone(torch.randn(600, 3, 8, 8, generator=gen))
    aligner = LinearAligner(alpha=1e-6).fit(probe, probe)
    names = ["w", "x", "y", "z", "no w", "no x", "no y", "no z"]
    bank = ConceptBank(names, torch.cat([torch.eye(4), -torch.eye(4)]), "toy")
    contrast = {n: [f"no {n}"] for n in "wxyz"}
    return backbone, aligner, bank, probe, contrast, torch.randn(30, 3, 8, 8, generator=gen)


def test_probe_text_cavs_find_the_concept_the_logit_reads_and_not_the_others():
    from t2c_captum.explain import cav_similarity, image_tcav, text_tcav

    backbone, aligner, bank, probe, contrast, inputs = _tcav_toy()
    result = text_tcav(backbone, aligner, bank, list("wxyz"), inputs, 0, probe_features=probe,
                       contrast=contrast)
    assert result.method == "probe" and len(result.scores["y"]) == 20 and len(result.random_scores) == 20
    assert result.mean("y") == 1.0 and "y" in result.significant
    assert len({"w", "x", "z"} & set(result.significant)) <= 1
    # the same examples chosen by labels give the same CAV direction
    labelled = {"y": probe[probe[:, 2] > probe[:, 2].mean()]}
    images = image_tcav(backbone, labelled, probe, inputs, 0)
    assert images.method == "images" and "y" in images.significant
    assert cav_similarity(result.cavs["y"], images.cavs["y"]) > 0.9
    # through the other class's logit the concept lowers the score
    assert text_tcav(backbone, aligner, bank, ["y"], inputs, 1, probe_features=probe,
                     contrast=contrast).mean("y") == 0.0


def test_probe_text_cavs_say_what_is_missing():
    from t2c_captum.explain import mean_difference_cavs, text_tcav

    backbone, aligner, bank, probe, contrast, inputs = _tcav_toy()
    with pytest.raises(DataError, match="no entry for 'y'"):
        text_tcav(backbone, aligner, bank, ["y"], inputs, 0, probe_features=probe, contrast={"w": ["x"]})
    with pytest.raises(DataError, match="probe images read as 'y'"):
        few_y = torch.cat([probe[probe[:, 2] < probe[:, 2].mean()][:60], probe[probe[:, 2] > 0][:3]])
        text_tcav(backbone, aligner, bank, ["y"], inputs, 0, probe_features=few_y, contrast=contrast)
    with pytest.raises(DataError, match="rows"):
        text_tcav(backbone, aligner, bank, ["y"], inputs, 0, probe_features=probe,
                  probe_embeddings=probe[:10], contrast=contrast)
    with pytest.raises(DataError, match="random examples"):
        mean_difference_cavs(probe[:40], probe[:20])
    cavs, null = mean_difference_cavs(probe[:40], probe, runs=7, seed=3)
    assert len(cavs) == len(null) == 7 and cavs[0].shape == (4,)
    again, _ = mean_difference_cavs(probe[:40], probe, runs=7, seed=3)
    torch.testing.assert_close(torch.stack(cavs), torch.stack(again))
