from __future__ import annotations

import pytest

from t2c_captum._exceptions import WorldError
from t2c_captum.world import (
    HELD_OUT_PAIRS,
    RETRIEVAL_QUERIES,
    SHIFT_TASKS,
    WorldDataset,
    answer_set,
    caption_check,
    make_split,
    null_pair,
    parse_query,
    shift_pair,
)


def test_shift_pair_over_represents_the_value():
    source, target = shift_pair("colour", "red", 0.5, n=400, seed=1)
    src = sum(f["colour"] == "red" for f in source.factors) / 400
    tgt = sum(f["colour"] == "red" for f in target.factors) / 400
    assert src < 0.25 and tgt >= 0.5
    assert source.class_names[0] == "red"
    again = shift_pair("colour", "red", 0.5, n=400, seed=1)[1]
    assert again.samples == target.samples


def test_forced_values_respect_constraints():
    _, target = shift_pair("count", "three", 0.9, n=100)
    assert all(s.count <= 3 for s in target.samples)
    assert sum(s.count == 3 for s in target.samples) >= 90
    _, target = shift_pair("shape", "circle", 0.9, n=200)
    assert not {(s.shape, s.colour) for s in target.samples} & set(HELD_OUT_PAIRS)


def test_null_pair_differs_only_by_seed():
    a, b = null_pair(n=50, seed=3)
    assert a.samples != b.samples
    assert null_pair(n=50, seed=3)[0].samples == a.samples


def test_shift_tasks_are_named_and_buildable():
    assert len({t.name for t in SHIFT_TASKS}) == len(SHIFT_TASKS) >= 9
    source, target = SHIFT_TASKS[0].make(n=20)
    assert len(source) == len(target) == 20


def test_bad_shift_settings():
    with pytest.raises(WorldError, match="strength"):
        shift_pair("colour", "red", 1.5)
    with pytest.raises(WorldError, match="'purple'"):
        shift_pair("colour", "purpel", 0.5)


def test_retrieval_answer_sets():
    ds = WorldDataset("test")
    query = parse_query('"red" & "circle" & ~"striped background"')
    assert query.text == '"red" & "circle" & ~"striped background"'
    expected = {
        i for i, f in enumerate(ds.factors)
        if f["colour"] == "red" and f["shape"] == "circle" and f["background"] != "striped"
    }
    assert answer_set(query, ds) == expected == answer_set(query.text, ds.samples)
    for q in RETRIEVAL_QUERIES:
        assert parse_query(q.text) == q
        assert answer_set(q, ds), q.text  # every standard query has answers in the test split


def test_bad_queries():
    with pytest.raises(WorldError, match="'red'"):
        parse_query('"redd" & "circle"')
    with pytest.raises(WorldError, match="quoted"):
        parse_query("red & circle")


def test_caption_check_words():
    sample = make_split("test", 1)[0]
    check = caption_check(sample)
    assert sample.shape in check["shape"] and sample.colour in check["colour"]
    assert all(any(w in c for w in check["shape"] + ["object", "shape", "thing"])
               for c in sample.captions)
