"""The concept world's artifacts a report needs (an aligner, a CBM), made once per test session."""

from __future__ import annotations

import pytest

from t2c_captum.concepts import ConceptBank

N_TRAIN = 3000  # the size other world tests fit: one shared fit per session


@pytest.fixture(scope="session")
def world_artifacts(world_aligned, tmp_path_factory):
    """``{"aligner": path, "cbm": path}``: world-cnn aligned to world-clip, and a shape CBM on it."""
    from t2c_captum.cbm import ConceptBottleneck
    from t2c_captum.features import extract_features
    from t2c_captum.world.adapters import world_source

    bb, space, aligner = world_aligned("world-cnn", N_TRAIN)
    root = tmp_path_factory.mktemp("report-artifacts")
    saved = aligner.save(root / "world-cnn")
    bank = ConceptBank.from_vocabulary(space, "world")
    train, val = (extract_features(world_source(split, n, "shape"), {"source": bb}, progress=False)
                  for split, n in (("train", 1200), ("val", 400)))
    cbm = ConceptBottleneck(bank, aligner, Cs=(0.03, 0.1, 0.3, 1.0), max_nonzero_per_class=10)
    cbm.fit_stores(train, val)
    return {"aligner": str(saved), "cbm": str(cbm.save(root / "shape-cbm"))}


#: the concept-world report the tests render: small enough to build in well under a minute on 2 cores
REPORT_DATA = "world:test:shape:300"
REPORT_COMPARE = "world:compositional:shape:300"
REPORT_QUERIES = ('"red" & "star"', '"circle" & ~"blue"')


@pytest.fixture(scope="session")
def world_report(world_artifacts, tmp_path_factory):
    """A full report (every section) of world-cnn on the world's test split."""
    from t2c_captum.report import build_report

    out = tmp_path_factory.mktemp("world-report") / "report"
    return build_report(world_artifacts["aligner"], REPORT_DATA, out, compare_data=REPORT_COMPARE,
                        cbm=world_artifacts["cbm"], queries=list(REPORT_QUERIES), decoder="world-decoder",
                        n_samples=8, n_maps=4)
