from __future__ import annotations

import pytest
import torch

from t2c_captum import DataError, DimensionMismatchError, IncompatibleArtifactError
from t2c_captum.decoders import (
    PrefixDecoder,
    align_directions,
    caption_direction,
    caption_embeddings,
    caption_features,
    read_corpus,
    train_prefix_decoder,
)
from t2c_captum.testing import FakeSpace

from .conftest import CORPUS, TINY


def test_training_reduces_loss_and_text_embeddings_decode_to_their_captions(tiny_decoder, fake_space):
    stats = tiny_decoder.training_stats
    assert stats["final_loss"] < 0.5 * stats["first_loss"]
    assert stats["vocabulary_size"] == len(tiny_decoder.vocabulary) < 30  # compact, not CLIP's 49k
    captions = tiny_decoder.decode(fake_space.encode_text(CORPUS), project=False)
    assert sum(c == t for c, t in zip(captions, CORPUS, strict=True)) >= 14, captions


def test_embeddings_of_the_space_caption_as_the_decoder_decodes_them(tiny_decoder, fake_space):
    text = fake_space.encode_text(CORPUS[:4])
    captions = caption_embeddings(tiny_decoder, text, project=False)
    assert isinstance(captions, list) and captions == tiny_decoder.decode(text, project=False)
    # the default projects onto the text memory first, as decode's default does
    noisy = text + 0.3 * torch.randn(text.shape, generator=torch.Generator().manual_seed(0))
    assert caption_embeddings(tiny_decoder, noisy) == tiny_decoder.decode(noisy, project=True)
    assert caption_embeddings(tiny_decoder, noisy, strategy="beam", beam_size=2) == tiny_decoder.decode(
        noisy, strategy="beam", beam_size=2)


def test_save_load_round_trip_gives_identical_captions_and_scores(tiny_decoder, fake_space, tmp_path):
    path = tiny_decoder.save(tmp_path / "dec")
    assert path.name == "dec.json" and (tmp_path / "dec.safetensors").is_file()
    loaded = PrefixDecoder.load(path, space=fake_space)
    x = fake_space.encode_text(CORPUS[:5]) + 0.1
    for strategy in ("greedy", "beam"):
        assert loaded.decode_scored(x, strategy=strategy) == tiny_decoder.decode_scored(x, strategy=strategy)
    assert torch.equal(loaded.memory, tiny_decoder.memory)


def test_loading_for_another_space_says_what_differs(tiny_decoder, tmp_path):
    tiny_decoder.save(tmp_path / "dec")
    with pytest.raises(IncompatibleArtifactError, match="embed_dim"):
        PrefixDecoder.load(tmp_path / "dec", space=FakeSpace(dim=8, name="fake-space"))
    with pytest.raises(IncompatibleArtifactError, match="id: decoder has 'fake-space', given 'other'"):
        PrefixDecoder.load(tmp_path / "dec", space=FakeSpace(dim=16, name="other"))


def _weights(decoder):
    return {k: v.clone() for k, v in decoder.state_dict().items()}


def test_interrupted_training_resumes_from_its_last_checkpoint(fake_space, tmp_path):
    settings = {"steps": 10, "batch_size": 8, "checkpoint_every": 4}
    full = train_prefix_decoder(
        fake_space, CORPUS, config=TINY, settings=settings, progress=False, out=tmp_path / "a"
    )

    def interrupt(step, loss):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_prefix_decoder(
            fake_space,
            CORPUS,
            config=TINY,
            settings=settings,
            progress=False,
            out=tmp_path / "b",
            callback=interrupt,
        )
    assert not (tmp_path / "b" / "decoder.json").exists()
    seen = []
    resumed = train_prefix_decoder(
        fake_space,
        CORPUS,
        config=TINY,
        settings=settings,
        progress=False,
        out=tmp_path / "b",
        resume=True,
        callback=lambda s, _: seen.append(s),
    )
    assert seen == [5, 6, 7, 8, 9, 10]  # continued after the step-4 checkpoint
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_another_runs_checkpoint_is_refused(fake_space, tmp_path):
    train_prefix_decoder(
        fake_space,
        CORPUS,
        config=TINY,
        settings={"steps": 2, "checkpoint_every": 1},
        progress=False,
        out=tmp_path,
    )
    with pytest.raises(IncompatibleArtifactError, match="corpus"):
        train_prefix_decoder(
            fake_space,
            CORPUS[:4],
            config=TINY,
            settings={"steps": 4, "checkpoint_every": 1},
            progress=False,
            out=tmp_path,
            resume=True,
        )


def test_memory_projection_moves_inputs_onto_the_text_memory(tiny_decoder, fake_space):
    memory = tiny_decoder.memory
    assert memory.shape == (len(CORPUS), 16)
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(memory[:6] + 0.6 * torch.randn(6, 16, generator=gen), dim=-1)
    moved = tiny_decoder.project(x)
    assert torch.allclose(moved.norm(dim=-1), torch.ones(6), atol=1e-5)
    before = (x @ memory.T).max(dim=1).values
    after = (moved @ memory.T).max(dim=1).values
    assert (after > before).all() and (after > 0.97).all()
    # an input on a memory row stays there (tau is small)
    assert torch.allclose(tiny_decoder.project(memory[:3]), memory[:3], atol=0.05)


def test_beam_search_scores_at_least_greedy(tiny_decoder, fake_space):
    gen = torch.Generator().manual_seed(1)
    x = fake_space.encode_text(CORPUS[:8]) + 0.5 * torch.randn(8, 16, generator=gen)
    greedy = tiny_decoder.decode_scored(x, project=False)
    beam = tiny_decoder.decode_scored(x, project=False, strategy="beam", beam_size=4, length_penalty=0.0)
    assert all(b[1] >= g[1] - 1e-6 for b, g in zip(beam, greedy, strict=True))
    assert all(b[1] <= 0 for b in beam)


def test_nucleus_sampling_is_seeded(tiny_decoder, fake_space):
    x = fake_space.encode_text(CORPUS[:8])
    opts = {"strategy": "nucleus", "top_p": 0.95, "temperature": 3.0}
    first = tiny_decoder.decode(x, project=False, seed=7, **opts)
    assert tiny_decoder.decode(x, project=False, seed=7, **opts) == first
    others = [tiny_decoder.decode(x, project=False, seed=s, **opts) for s in range(3)]
    assert any(o != first for o in others)


CACHE_CASES = [
    {"strategy": "greedy"},
    {"strategy": "beam", "beam_size": 3},
    {"strategy": "beam", "beam_size": 4, "length_penalty": 0.0},
    {"strategy": "nucleus", "seed": 5, "top_p": 0.95, "temperature": 2.0},
]


@pytest.mark.parametrize("options", CACHE_CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_the_key_value_cache_gives_the_tokens_of_full_recomputation(options):
    """A random-init decoder gives the same tokens and scores with the key/value cache as when the whole
    sequence is recomputed each step (``use_cache=False``)."""
    from t2c_captum.decoders import CompactVocabulary, GenerationOptions, PrefixDecoderConfig, generate
    from t2c_captum.decoders.tokenizer import SPECIAL_TOKENS

    torch.manual_seed(0)
    config = PrefixDecoderConfig(embed_dim=16, prefix_length=3, n_layer=2, n_embd=32, n_head=2, max_tokens=10)
    decoder = PrefixDecoder(config, CompactVocabulary(list(range(400)))).eval()
    with torch.no_grad():  # wider than GPT-2's init, so that rows and steps pick different tokens
        for weight in decoder.gpt.parameters():
            if weight.dim() > 1:
                weight.normal_(0, 0.2)
        prefix = decoder.prefix(torch.randn(12, 16, generator=torch.Generator().manual_seed(2)))
    runs = {
        use_cache: generate(
            decoder.gpt,
            prefix,
            stop_ids=[SPECIAL_TOKENS["end"]],
            start_ids=[SPECIAL_TOKENS["start"]],
            banned_ids=[SPECIAL_TOKENS["pad"], SPECIAL_TOKENS["start"]],
            options=GenerationOptions(max_new_tokens=10, use_cache=use_cache, **options),
        )
        for use_cache in (True, False)
    }
    assert [g.ids for g in runs[True]] == [g.ids for g in runs[False]]
    assert [g.log_prob for g in runs[True]] == pytest.approx([g.log_prob for g in runs[False]], abs=1e-4)
    assert len({tuple(g.ids) for g in runs[True]}) > 1  # rows differ
    assert any(len(set(g.ids)) > 1 for g in runs[True])  # steps differ


@pytest.mark.parametrize("options", CACHE_CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_the_key_value_cache_gives_the_same_captions_when_some_rows_stop_early(
    tiny_decoder, fake_space, options
):
    """A trained decoder (rows stop at different steps; finished beams carry on as filler)."""
    x = fake_space.encode_text(CORPUS[:8]) + 0.3 * torch.randn(
        8, 16, generator=torch.Generator().manual_seed(4)
    )
    cached = tiny_decoder.decode_scored(x, project=False, **options)
    full = tiny_decoder.decode_scored(x, project=False, use_cache=False, **options)
    assert [c for c, _ in cached] == [c for c, _ in full]
    assert [s for _, s in cached] == pytest.approx([s for _, s in full], abs=1e-4)


def test_bad_inputs_raise_clear_errors(tiny_decoder, fake_space):
    with pytest.raises(DimensionMismatchError, match="17-d but the decoder decodes 16-d"):
        tiny_decoder.decode(torch.randn(2, 17))
    with pytest.raises(DataError, match="strategy"):
        tiny_decoder.decode(torch.randn(2, 16), strategy="sideways")
    with pytest.raises(DataError, match="no captions"):
        train_prefix_decoder(fake_space, ["", "   "], config=TINY, progress=False)
    with pytest.raises(DataError, match="no captions"):
        read_corpus([])


def test_corpus_files(tmp_path):
    (tmp_path / "c.txt").write_text("a red star\n\n a blue  cross\n")
    (tmp_path / "c.json").write_text('[{"caption": "a red star"}, "a blue cross"]')
    (tmp_path / "c.csv").write_text("id,caption\n1,a red star\n2,a blue cross\n")
    for name in ("c.txt", "c.json", "c.csv"):
        assert read_corpus(tmp_path / name) == ["a red star", "a blue cross"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="no captions"):
        read_corpus(tmp_path / "empty.txt")


def test_a_direction_in_the_space_decodes_to_what_it_adds(tiny_decoder, fake_space):
    emb = fake_space.encode_text(CORPUS, normalize=True)
    red_star = CORPUS.index("a red star")
    direction = emb[red_star] - emb.mean(0)
    assert caption_direction(tiny_decoder, direction, kind="space") == ["a red star"]
    with pytest.raises(DimensionMismatchError):
        caption_direction(tiny_decoder, torch.randn(5), kind="space")
    with pytest.raises(DataError, match="needs the aligner"):
        caption_direction(tiny_decoder, torch.randn(16))


def _aligner_into(space, n_features=24, seed=0):
    """A ridge aligner from synthetic 24-d features onto the space's text embeddings of CORPUS."""
    from t2c_captum.aligners import make_aligner

    gen = torch.Generator().manual_seed(seed)
    y = space.encode_text(CORPUS, normalize=True).repeat(12, 1)
    y = y + 0.01 * torch.randn(y.shape, generator=gen)
    mix = torch.randn(16, n_features, generator=gen)
    x = y @ torch.linalg.pinv(mix).T  # x @ mix.T == y: the features carry the embeddings linearly
    aligner = make_aligner("linear").fit(x, y)
    aligner.target_ = dict(space.identity)
    return aligner, x[: len(CORPUS)]


def test_features_and_feature_directions_decode_through_the_aligner(tiny_decoder, fake_space):
    aligner, x = _aligner_into(fake_space)
    captions = caption_features(tiny_decoder, x, aligner, project=False)
    assert sum(c == t for c, t in zip(captions, CORPUS, strict=True)) >= 14, captions
    red_star = CORPUS.index("a red star")
    direction = x[red_star] - x.mean(0)
    assert caption_direction(tiny_decoder, direction, aligner) == ["a red star"]
    z = aligner.transform(x)
    assert torch.allclose(align_directions(direction, aligner)[0], z[red_star] - z.mean(0), atol=1e-4)
    with pytest.raises(DimensionMismatchError, match="features are 7-d but the aligner takes 24-d"):
        caption_features(tiny_decoder, torch.randn(2, 7), aligner)
    aligner.target_ = {"id": "another-space", "embed_dim": 16}
    with pytest.raises(IncompatibleArtifactError, match="another-space"):
        caption_features(tiny_decoder, x, aligner)


def test_images_decode_through_an_aligned_backbone_and_through_the_space(
    tiny_decoder, fake_space, labelled_images
):
    from t2c_captum.alignment import fit_aligner
    from t2c_captum.decoders import caption_images
    from t2c_captum.testing import FakeBackbone

    backbone = FakeBackbone(dim=40)
    aligner, _ = fit_aligner(backbone, fake_space, str(labelled_images), progress=False)
    through_backbone = caption_images(tiny_decoder, str(labelled_images), backbone, aligner)
    own = caption_images(tiny_decoder, str(labelled_images), space=fake_space, strategy="beam")
    assert len(through_backbone) == len(own) == 24
    assert all(isinstance(c, str) and c for c in through_backbone + own)
    with pytest.raises(DataError, match="needs its aligner"):
        caption_images(tiny_decoder, str(labelled_images), backbone)
    with pytest.raises(IncompatibleArtifactError, match="embed_dim"):
        caption_images(tiny_decoder, str(labelled_images), space=FakeSpace(dim=8, name="fake-space"))


def test_a_probe_captions_images_through_its_decoder(tiny_decoder, fake_space):
    from t2c_captum import Probe, module_backbone

    aligner, x = _aligner_into(fake_space)
    flat = module_backbone(torch.nn.Sequential(torch.nn.Flatten()), layer="0", preprocess=lambda image: image,
                           input_size=(24, 1, 1), name="flat")
    probe = Probe(flat, fake_space, aligner, decoder=tiny_decoder)
    expected = caption_features(tiny_decoder, x, aligner, project=False)
    assert probe.caption(x[:, :, None, None], project=False) == expected
    assert sum(c == t for c, t in zip(expected, CORPUS, strict=True)) >= 14


def test_the_public_identity_differences_is_the_decoder_kind_of_the_one_comparison():
    from t2c_captum import _identity
    from t2c_captum.decoders import identity_differences

    saved = {"id": "fake-space", "embed_dim": 16, "layer": "x", "weights": "a"}
    given = {"id": "other", "embed_dim": 16, "layer": "y", "weights": "b", "preprocess": "p"}
    assert identity_differences(saved, given) == ["id: decoder has 'fake-space', given 'other'",
                                                  "weights: decoder has 'a', given 'b'"]
    assert identity_differences(saved, given) == _identity.identity_differences(
        "decoder", saved, given, names=("decoder has", "given"))
