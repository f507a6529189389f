"""ConceptBank: embedding, caching, class-agnostic prompts, lookup errors, persistence."""

from __future__ import annotations

import pytest
import torch

from t2c_captum import DataError, DimensionMismatchError, UnknownNameError
from t2c_captum.concepts import ConceptBank, Vocabulary, resolve_vocabulary
from t2c_captum.testing import FakeSpace


class CountingSpace(FakeSpace):
    """FakeSpace that counts the texts it embeds."""

    def __init__(self) -> None:
        super().__init__(dim=6)
        self.seen: list[str] = []

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        self.seen += texts
        return super()._encode_text_batch(texts)


def test_embeddings_are_unit_rows_of_the_templated_prompts(tmp_path):
    space = CountingSpace()
    bank = ConceptBank.build(space, ["red", "striped"], cache_dir=tmp_path)
    assert bank.concepts == ["red", "striped"] and bank.embeddings.shape == (2, 6)
    torch.testing.assert_close(bank.embeddings.norm(dim=1), torch.ones(2))
    assert space.seen == ["a photo of red.", "a photo of striped."]
    torch.testing.assert_close(bank.vector("striped"), space.encode_prompts(["striped"])[0])


def test_second_build_reads_the_cache_and_a_change_of_texts_misses_it(tmp_path):
    space = CountingSpace()
    first = ConceptBank.build(space, ["red", "blue"], cache_dir=tmp_path)
    space.seen.clear()
    again = ConceptBank.build(space, ["red", "blue"], cache_dir=tmp_path)
    assert space.seen == [] and torch.equal(first.embeddings, again.embeddings)
    ConceptBank.build(space, ["red", "blue"], templates=["{} thing"], cache_dir=tmp_path)
    assert space.seen == ["red thing", "blue thing"]
    other = FakeSpace(dim=6, seed=7, name="other-space")
    assert not torch.equal(ConceptBank.build(other, ["red", "blue"], cache_dir=tmp_path).embeddings,
                           first.embeddings)


def test_a_corrupted_cache_entry_is_rebuilt(tmp_path):
    space = CountingSpace()
    ConceptBank.build(space, ["red"], cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.safetensors")
    entry.write_bytes(b"not a safetensors file")
    bank = ConceptBank.build(space, ["red"], cache_dir=tmp_path)
    assert bank.concepts == ["red"] and ConceptBank.load(entry).concepts == ["red"]


def test_class_agnostic_concepts_average_over_classes(tmp_path):
    space = CountingSpace()
    ConceptBank.build(space, ["red"], templates=["a {}"], class_names=["car", "dog"], cache_dir=tmp_path)
    assert space.seen == ["a red car", "a red dog"]


def test_concepts_with_their_own_prompts_skip_templates(tmp_path):
    space = CountingSpace()
    bank = ConceptBank.build(space, {"red": ["a red shape", "a red object"]}, cache_dir=tmp_path)
    assert space.seen == ["a red shape", "a red object"] and bank.info["templates"] is None


@pytest.mark.parametrize(
    ("concepts", "message"),
    [
        ([], "empty"),
        (["red", "blue", "red"], "repeats 1 concept"),
        (["red", " "], "blank"),
        ("red", "one string"),
    ],
)
def test_bad_concept_lists_are_clear_errors(concepts, message, tmp_path):
    with pytest.raises(DataError, match=message):
        ConceptBank.build(FakeSpace(), concepts, cache_dir=tmp_path)


def test_unknown_concepts_suggest_close_ones(tmp_path):
    bank = ConceptBank.build(FakeSpace(), ["striped", "dotted"], cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="Did you mean 'striped'"):
        bank.index("stripped")
    assert "dotted" in bank and "plaid" not in bank and bank.subset(["dotted"]).concepts == ["dotted"]


def test_save_load_round_trip_and_space_check(tmp_path):
    bank = ConceptBank.build(FakeSpace(), Vocabulary(["a", "b"], name="mine"), cache=False)
    loaded = ConceptBank.load(bank.save(tmp_path / "bank.safetensors"))
    assert loaded.concepts == ["a", "b"] and loaded.info["vocabulary"] == "mine"
    torch.testing.assert_close(loaded.embeddings, bank.embeddings)
    loaded.check_space("fake-space")
    with pytest.raises(DimensionMismatchError, match="rebuild the bank"):
        loaded.check_space("world-clip")


def test_world_vocabulary_comes_with_prompts():
    vocab = resolve_vocabulary("world")
    assert "striped background" in vocab.concepts and "striped" in vocab.concepts
    assert vocab.prompts is not None
    assert "an object on a striped background" in vocab.prompts["striped background"]
