from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from t2c_captum import UnknownNameError, hookimpl
from t2c_captum.cli import app
from t2c_captum.decoders import list_decoders, load_decoder
from t2c_captum.plugins import temporary_plugin

runner = CliRunner()
CAPTIONS = ["a red circle", "a blue square", "a green star", "a yellow cross"] * 3


def test_world_decoder_is_registered_and_plugins_can_add_decoders(tiny_decoder):
    assert "world-decoder" in list_decoders()

    class DecoderPlugin:
        @hookimpl
        def register_decoders(self, register):
            register("tiny", lambda **_: tiny_decoder, description="a test decoder")

    with temporary_plugin(DecoderPlugin(), "decoder-plugin"):
        assert load_decoder("tiny") is tiny_decoder
        parts = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
        assert {
            "kind": "decoders",
            "name": "tiny",
            "plugin": "decoder-plugin",
            "description": "a test decoder",
        } in parts
    with pytest.raises(UnknownNameError, match="Did you mean 'world-decoder'"):
        load_decoder("world-decodr")


def test_cli_trains_resumes_and_captions(tmp_path):
    corpus = tmp_path / "captions.txt"
    corpus.write_text("\n".join(CAPTIONS))
    out = tmp_path / "dec"
    args = [
        "decoder",
        "train",
        "world-clip",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--layers",
        "1",
        "--width",
        "32",
        "--heads",
        "2",
        "--prefix-length",
        "2",
        "--checkpoint-every",
        "2",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert (
        stats["steps_done"] == 4 and (out / "decoder.json").is_file() and (out / "checkpoint.json").is_file()
    )
    resumed = runner.invoke(app, [*args[:8], "8", *args[9:], "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output)["steps_done"] == 8  # 4 from the checkpoint + 4 more

    from t2c_captum.spaces import load_space

    emb = load_space("world-clip").encode_text(CAPTIONS[:2]).numpy()
    np.save(tmp_path / "v.npy", emb)
    result = runner.invoke(
        app,
        [
            "caption",
            str(out / "decoder.json"),
            "--vector",
            str(tmp_path / "v.npy"),
            "--no-project",
            "--strategy",
            "beam",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["item"] for r in rows] == ["v.npy[0]", "v.npy[1]"] and all(
        isinstance(r["caption"], str) for r in rows
    )

    result = runner.invoke(
        app, ["caption", str(out / "decoder.json"), "--data", "world:test:shape:3", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 3

    np.save(tmp_path / "bad.npy", np.zeros((1, 5), dtype=np.float32))
    result = runner.invoke(app, ["caption", str(out / "decoder.json"), "--vector", str(tmp_path / "bad.npy")])
    assert result.exit_code == 2 and "5-d but the decoder decodes" in result.output
    result = runner.invoke(app, ["caption", str(out / "decoder.json")])
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_cli_refuses_an_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    result = runner.invoke(
        app,
        [
            "decoder",
            "train",
            "world-clip",
            "--corpus",
            str(tmp_path / "empty.txt"),
            "--out",
            str(tmp_path / "d"),
        ],
    )
    assert result.exit_code == 2 and "no captions" in result.output


def test_caption_corpora_come_from_the_hook(tmp_path):
    from t2c_captum.decoders import load_caption_corpus, read_corpus
    from t2c_captum.world.decoder import world_corpus

    # the concept world's corpus is registered like a third party's, options passed through
    assert load_caption_corpus("world", n_samples=6) == world_corpus(6)
    assert load_caption_corpus("world") == world_corpus()
    seen = {}

    class CorpusPlugin:
        @hookimpl
        def register_caption_corpora(self, register):
            def shapes(n_samples=None, **_):
                seen["n_samples"] = n_samples
                return CAPTIONS[: n_samples or len(CAPTIONS)]

            register("shapes", shapes, description="four shapes, coloured")

    with temporary_plugin(CorpusPlugin(), "corpus-plugin"):
        assert read_corpus("shapes") == CAPTIONS
        parts = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
        assert {"kind": "corpora", "name": "shapes", "plugin": "corpus-plugin",
                "description": "four shapes, coloured"} in parts
        common = ["--steps", "2", "--batch-size", "4", "--layers", "1", "--width", "32", "--heads", "2",
                  "--prefix-length", "2", "--json"]
        args = ["decoder", "train", "world-clip", "--corpus", "shapes", "--n-samples", "8",
                "--out", str(tmp_path / "d"), *common]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert seen["n_samples"] == 8
        assert json.loads(result.output)["steps_done"] == 2
        # the old name still works, hidden from --help
        old = ["decoder", "train", "world-clip", "--corpus", "shapes", "--world-samples", "3",
               "--out", str(tmp_path / "d-old"), *common]
        result = runner.invoke(app, old)
        assert result.exit_code == 0, result.output
        assert seen["n_samples"] == 3
        both = ["decoder", "train", "world-clip", "--corpus", "shapes", "--n-samples", "4",
                "--world-samples", "3", "--out", str(tmp_path / "d-both"), *common]
        result = runner.invoke(app, both)
        assert result.exit_code == 2 and "disagree" in result.output
        helped = runner.invoke(app, ["decoder", "train", "--help"], env={"COLUMNS": "200"})
        assert "--n-samples" in helped.output and "--world-samples" not in helped.output
    # an unknown name: one error line naming the close registered one, exit 2
    result = runner.invoke(
        app, ["decoder", "train", "world-clip", "--corpus", "wrld", "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 2 and "Did you mean 'world'" in result.output
    from t2c_captum import DataError

    with pytest.raises(DataError, match="registered caption corpus"):
        read_corpus("shapes")
