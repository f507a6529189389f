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


# ---------------------------------------------------------------- groups
def test_groups_give_alternatives_and_survive_the_cache_and_saving(tmp_path):
    space = CountingSpace()
    vocab = Vocabulary(["red", "blue", "circle", "star", "large"], name="g",
                       groups={"red": "colour", "blue": "colour", "circle": "shape", "star": "shape"})
    bank = ConceptBank.build(space, vocab, cache_dir=tmp_path)
    assert bank.alternatives("red") == ["blue"] and bank.alternatives("large") == []
    assert bank.groups == {"red": "colour", "blue": "colour", "circle": "shape", "star": "shape"}
    space.seen.clear()
    cached = ConceptBank.build(space, vocab, cache_dir=tmp_path)
    assert space.seen == [] and cached.groups == bank.groups and cached.alternatives("star") == ["circle"]
    plain = ConceptBank.build(space, ["red", "blue", "circle", "star", "large"], cache_dir=tmp_path)
    assert space.seen == [] and plain.groups == {}  # groups are not in the key, nor carried over
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    loaded = ConceptBank.load(bank.save(tmp_path / "saved.safetensors"))
    assert loaded.groups == bank.groups
    assert bank.subset(["red", "star"]).groups == {"red": "colour", "star": "shape"}
    assert bank.subset(["red", "star"]).alternatives("red") == []
    assert bank.with_groups(None).groups == {}
    with pytest.raises(UnknownNameError):
        bank.alternatives("purple")


def test_bad_groups_are_clear_errors():
    space = FakeSpace()
    with pytest.raises(DataError, match="not in the concepts: 'green'"):
        ConceptBank.build(space, Vocabulary(["red"], groups={"green": "colour"}), cache=False)
    with pytest.raises(DataError, match="non-empty string, got 3 for 'red'"):
        ConceptBank.build(space, Vocabulary(["red"], groups={"red": 3}), cache=False)  # type: ignore[dict-item]
    with pytest.raises(DataError, match="must map concept"):
        ConceptBank(["red"], torch.ones(1, 4), "s", groups=["colour"])  # type: ignore[arg-type]


def test_builtin_vocabularies_have_groups():
    world = resolve_vocabulary("world")
    assert world.groups is not None and world.groups["red"] == "colour"
    assert world.groups["striped background"] == "background" and world.groups["striped"] == "pattern"
    assert getattr(resolve_vocabulary("visual"), "groups", None) is None  # synonyms: no default groups
    visual = resolve_vocabulary("visual-grouped")
    assert visual.groups is not None and set(visual.groups) == set(visual.concepts)
    assert visual.groups["red"] == "colours"
    imagenet = resolve_vocabulary("imagenet")
    assert len(imagenet.concepts) == len(set(imagenet.concepts)) > 990
    assert set(imagenet.groups.values()) == {"imagenet class"}  # type: ignore[union-attr]


def test_vocabulary_files_can_give_groups(tmp_path):
    import json

    grouped = tmp_path / "g.json"
    grouped.write_text(json.dumps({"groups": {"colour": ["red", "blue"], "shape": ["circle"]}}))
    vocab = resolve_vocabulary(str(grouped))
    assert vocab.concepts == ["red", "blue", "circle"]
    assert vocab.groups == {"red": "colour", "blue": "colour", "circle": "shape"}
    table = tmp_path / "g.csv"
    table.write_text("concept,group\nred,colour\nblue,colour\nlarge,\nred,colour\n")
    vocab = resolve_vocabulary(str(table))
    assert vocab.concepts == ["red", "blue", "large"] and vocab.groups == {"red": "colour", "blue": "colour"}
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps(["red", "blue"]))
    assert resolve_vocabulary(str(listed)).groups is None
    table.write_text("concept,group\nred,colour\nred,warm\n")
    with pytest.raises(DataError, match="two groups"):
        resolve_vocabulary(str(table))
    grouped.write_text(json.dumps({"groups": {"colour": "red"}}))
    with pytest.raises(DataError, match="list of concept strings"):
        resolve_vocabulary(str(grouped))


def test_space_checks_compare_the_bank_kind_of_identity():
    from t2c_captum._identity import COMPARED

    assert COMPARED["bank"] == ("id",)
    bank = ConceptBank(["a", "b"], torch.eye(2), "fake-space")
    bank.check_space("")  # an unrecorded id is not compared
    ConceptBank(["a", "b"], torch.eye(2), "").check_space("world-clip")

    class Aligner:
        target_: dict = {}

    bank.check_aligner(Aligner())  # no recorded target space
    Aligner.target_ = {"id": "fake-space", "weights": "abc"}
    bank.check_aligner(Aligner())
    Aligner.target_ = {"id": "world-clip"}
    with pytest.raises(DimensionMismatchError, match="embedded by 'fake-space'.*rebuild the bank"):
        bank.check_aligner(Aligner())
