from __future__ import annotations

import pytest
import torch

from t2c_captum import DataError, DimensionMismatchError
from t2c_captum.concepts import ConceptBank
from t2c_captum.concepts.scores import contrast_scores

GROUPS = {"red": "colour", "orange": "colour", "blue": "colour", "small": "size", "large": "size"}


def bank(groups=GROUPS):
    names = list(GROUPS)
    return ConceptBank(names, torch.eye(len(names), 8), "test-space", groups=groups)


def test_each_concept_is_scored_against_its_best_alternative():
    scores = torch.tensor([[0.50, 0.45, 0.10, 0.40, 0.42],   # red, just ahead of orange; large wins size
                           [0.30, 0.60, 0.20, 0.50, 0.20]])  # orange; small
    c = contrast_scores(scores, bank())
    expected = torch.tensor([[0.05, -0.05, -0.40, -0.02, 0.02],
                             [-0.30, 0.30, -0.40, 0.30, -0.30]])
    assert torch.allclose(c, expected, atol=1e-6)
    # a shift shared by every concept (what an image has in common with all texts) cancels
    assert torch.allclose(contrast_scores(scores + 0.2, bank()), c, atol=1e-6)


def test_ties_give_zero_margins():
    scores = torch.tensor([[0.5, 0.5, 0.1, 0.3, 0.3]])
    assert torch.allclose(contrast_scores(scores, bank())[0, [0, 1, 3, 4]], torch.zeros(4))


def test_a_concept_without_alternatives_is_refused_with_what_to_do():
    with pytest.raises(DataError, match="'small', 'large'.*groups"):
        contrast_scores(torch.zeros(1, 5), bank({"red": "colour", "orange": "colour", "blue": "colour"}))
    with pytest.raises(DimensionMismatchError, match="do not match 5 concepts"):
        contrast_scores(torch.zeros(1, 4), bank())
