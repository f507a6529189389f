from __future__ import annotations

import re
from collections import Counter
from importlib import resources

import pytest

from t2c_captum import UnknownNameError
from t2c_captum.concepts import load_vocabulary
from t2c_captum.concepts.vocabularies import visual_categories, visual_vocabulary
from t2c_captum.plugins import get_registries

REQUIRED_CATEGORIES = [
    "colours",
    "patterns",
    "textures",
    "materials",
    "shapes",
    "object parts",
    "common objects",
    "animals",
    "plants",
    "food",
    "scenes and places",
    "weather",
    "lighting and time of day",
    "viewpoint and composition",
    "art styles and media",
    "image quality and photographic effects",
    "sizes and quantities",
    "actions and states",
]


def _raw_concept_lines() -> list[str]:
    """Every non-blank, non-comment line of the packaged file, as written (not via the loader)."""
    text = resources.files("t2c_captum.concepts").joinpath("data").joinpath("visual.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_file_has_900_to_1200_unique_entries():
    lines = _raw_concept_lines()
    duplicates = [c for c, n in Counter(line.strip() for line in lines).items() if n > 1]
    assert duplicates == []
    assert 900 <= len(lines) <= 1200
    assert visual_vocabulary() == [line.strip() for line in lines]


def test_every_required_category_exists_and_is_not_empty():
    grouped = visual_categories()
    assert [c for c in REQUIRED_CATEGORIES if c not in grouped] == []
    assert [c for c, concepts in grouped.items() if not concepts] == []
    assert sum(len(v) for v in grouped.values()) == len(visual_vocabulary())


def test_entries_are_clean_lower_case_phrases():
    bad = [
        line
        for line in _raw_concept_lines()
        if line != line.strip() or line != line.lower() or re.search(r"[,'\"\t]", line) or "  " in line
    ]
    assert bad == []


def test_registered_as_visual_and_loaded_by_name():
    assert "visual" in get_registries().vocabularies
    entry = get_registries().vocabularies.entry("visual")
    assert "t2c_captum" in entry.description
    assert load_vocabulary("visual") == visual_vocabulary()


def test_category_filtering_keeps_only_and_orders_by_the_named_categories():
    grouped = visual_categories()
    assert "red" in grouped["colours"] and "wheel" in grouped["object parts"]
    picked = visual_vocabulary(["object parts", "colours"])
    assert picked == grouped["object parts"] + grouped["colours"]
    assert "red" in picked and "beach" not in picked
    assert visual_vocabulary("weather") == grouped["weather"]
    assert visual_vocabulary([]) == []


def test_unknown_category_names_the_valid_ones():
    with pytest.raises(UnknownNameError) as info:
        visual_vocabulary(["colours", "colors-and-stuff"])
    message = str(info.value)
    assert "colors-and-stuff" in message
    for category in REQUIRED_CATEGORIES:
        assert category in message


def test_read_vocabulary_file_reads_every_format_and_drops_groups(tmp_path):
    from t2c_captum import DataError
    from t2c_captum.concepts import read_vocabulary_file

    (tmp_path / "v.txt").write_text("# colours\nred\n\nblue\nred\n")
    (tmp_path / "v.json").write_text('{"groups": {"colour": ["red", "blue"], "shape": ["star"]}}')
    (tmp_path / "v.csv").write_text("concept,group\nred,colour\nstar,shape\n")
    assert read_vocabulary_file(tmp_path / "v.txt") == ["red", "blue"]  # comments, blanks, repeats
    assert read_vocabulary_file(tmp_path / "v.json") == ["red", "blue", "star"]
    assert read_vocabulary_file(tmp_path / "v.csv") == ["red", "star"]
    with pytest.raises(DataError, match="does not exist"):
        read_vocabulary_file(tmp_path / "missing.txt")
