"""ClipCap checkpoints with exactly the public key layout (shapes scaled down), made here, offline."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from t2c_captum import CheckpointFormatError, IncompatibleArtifactError
from t2c_captum.decoders import load_clipcap, load_decoder
from t2c_captum.testing import FakeSpace

E, P, CLIP, LAYERS = 16, 3, 12, 2
TEXTS = [
    "a dog runs on the grass.",
    "a cat sits on a mat.",
    "two birds fly over the sea.",
    "a red car parks near a house.",
    "people walk in the city.",
] * 4


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    """A tiny GPT-2 and a byte-level BPE GPT-2 tokenizer, trained and saved here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        TEXTS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = GPT2TokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    eos = fast.convert_tokens_to_ids("<|endoftext|>")
    gpt = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(fast),
            n_positions=64,
            n_embd=E,
            n_layer=1,
            n_head=2,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    )
    path = tmp_path_factory.mktemp("gpt2")
    gpt.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def _gpt_state(gpt_dir):
    from transformers import GPT2LMHeadModel

    gpt = GPT2LMHeadModel.from_pretrained(gpt_dir)
    state = {f"gpt.{k}": v.clone() for k, v in gpt.state_dict().items()}
    # the public files were written by an older transformers, with attention-mask buffers
    state["gpt.transformer.h.0.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
    state["gpt.transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    return state


def mlp_checkpoint(gpt_dir):
    gen = torch.Generator().manual_seed(1)
    hidden = P * E // 2
    return {
        "clip_project.model.0.weight": torch.randn(hidden, CLIP, generator=gen) * 0.3,
        "clip_project.model.0.bias": torch.randn(hidden, generator=gen) * 0.1,
        "clip_project.model.2.weight": torch.randn(P * E, hidden, generator=gen) * 0.3,
        "clip_project.model.2.bias": torch.randn(P * E, generator=gen) * 0.1,
        **_gpt_state(gpt_dir),
    }


def transformer_checkpoint():
    gen = torch.Generator().manual_seed(2)

    def r(*shape):
        return torch.randn(*shape, generator=gen) * 0.2

    state = {
        "clip_project.linear.weight": r(P * E, CLIP),
        "clip_project.linear.bias": r(P * E),
        "clip_project.prefix_const": r(P, E),
    }
    for n in range(LAYERS):
        pre = f"clip_project.transformer.layers.{n}."
        state.update(
            {
                pre + "norm1.weight": 1 + r(E),
                pre + "norm1.bias": r(E),
                pre + "attn.to_queries.weight": r(E, E),
                pre + "attn.to_keys_values.weight": r(2 * E, E),
                pre + "attn.project.weight": r(E, E),
                pre + "attn.project.bias": r(E),
                pre + "norm2.weight": 1 + r(E),
                pre + "norm2.bias": r(E),
                pre + "mlp.fc1.weight": r(2 * E, E),
                pre + "mlp.fc1.bias": r(2 * E),
                pre + "mlp.fc2.weight": r(E, 2 * E),
                pre + "mlp.fc2.bias": r(E),
            }
        )
    return state


def _reference_transformer_prefix(state, x, heads=8):
    """The published mapper, written out: linear -> [clip tokens | constants] -> pre-norm layers."""
    b = x.shape[0]
    h = (x @ state["clip_project.linear.weight"].T + state["clip_project.linear.bias"]).view(b, P, E)
    h = torch.cat([h, state["clip_project.prefix_const"].expand(b, -1, -1)], dim=1)
    for n in range(LAYERS):
        s = {k.split(f"layers.{n}.")[1]: v for k, v in state.items() if f"layers.{n}." in k}
        y = nn.functional.layer_norm(h, (E,), s["norm1.weight"], s["norm1.bias"])
        q = (y @ s["attn.to_queries.weight"].T).reshape(b, 2 * P, heads, E // heads)
        kv = (y @ s["attn.to_keys_values.weight"].T).reshape(b, 2 * P, 2, heads, E // heads)
        att = torch.einsum("bnhd,bmhd->bnmh", q, kv[:, :, 0]) / math.sqrt(E // heads)
        out = torch.einsum("bnmh,bmhd->bnhd", att.softmax(dim=2), kv[:, :, 1]).reshape(b, 2 * P, E)
        h = h + out @ s["attn.project.weight"].T + s["attn.project.bias"]
        y = nn.functional.layer_norm(h, (E,), s["norm2.weight"], s["norm2.bias"])
        h = (
            h
            + nn.functional.relu(y @ s["mlp.fc1.weight"].T + s["mlp.fc1.bias"]) @ s["mlp.fc2.weight"].T
            + s["mlp.fc2.bias"]
        )
    return h[:, P:]


def _greedy_reference(gpt, prefix, stops, n=12):
    x, ids = prefix, []
    for _ in range(n):
        nxt = int(gpt(inputs_embeds=x).logits[0, -1].argmax())
        if nxt in stops:
            break
        ids.append(nxt)
        x = torch.cat([x, gpt.get_input_embeddings()(torch.tensor([[nxt]]))], dim=1)
    return ids


def test_mlp_variant_with_finetuned_gpt2_loads_and_decodes(gpt_dir, tmp_path):
    state = mlp_checkpoint(gpt_dir)
    torch.save(state, tmp_path / "coco_weights.pt")
    dec = load_clipcap(tmp_path / "coco_weights.pt", tokenizer=gpt_dir)
    assert (dec.variant, dec.prefix_length, dec.embed_dim) == ("mlp", P, CLIP)
    x = torch.randn(3, CLIP)
    hidden = torch.tanh(x @ state["clip_project.model.0.weight"].T + state["clip_project.model.0.bias"])
    expected = (hidden @ state["clip_project.model.2.weight"].T + state["clip_project.model.2.bias"]).view(
        3, P, E
    )
    assert torch.allclose(dec.prefix(x), expected, atol=1e-5)
    assert torch.equal(dec.gpt.transformer.wte.weight, state["gpt.transformer.wte.weight"])
    with torch.no_grad():
        ids = _greedy_reference(dec.gpt, expected[:1], set(dec.stop_ids))
    from transformers import GPT2TokenizerFast

    text = GPT2TokenizerFast.from_pretrained(gpt_dir).decode(ids)
    captions = dec.decode(x, max_new_tokens=12)
    assert len(captions) == 3 and captions[0] == " ".join(text.split())
    assert load_decoder(f"clipcap:{tmp_path / 'coco_weights.pt'}", tokenizer=gpt_dir).variant == "mlp"


def test_transformer_variant_with_frozen_gpt2_from_a_directory(gpt_dir, tmp_path):
    from safetensors.torch import save_file

    state = transformer_checkpoint()
    save_file(state, tmp_path / "transformer_weights.safetensors")
    dec = load_clipcap(
        tmp_path / "transformer_weights.safetensors", gpt=str(gpt_dir), space=FakeSpace(dim=CLIP)
    )
    assert (dec.variant, dec.prefix_length, dec.embed_dim) == ("transformer", P, CLIP)
    assert not any(p.requires_grad for p in dec.gpt.parameters())
    x = torch.randn(4, CLIP)
    with torch.no_grad():
        assert torch.allclose(dec.prefix(x), _reference_transformer_prefix(state, x), atol=1e-5)
    assert all(isinstance(c, str) for c in dec.decode(x, strategy="beam", beam_size=3, max_new_tokens=6))
    with pytest.raises(IncompatibleArtifactError, match="embed_dim"):
        load_clipcap(tmp_path / "transformer_weights.safetensors", gpt=str(gpt_dir), space=FakeSpace(dim=8))


def test_unexpected_and_missing_keys_are_listed(gpt_dir, tmp_path):
    state = transformer_checkpoint()
    state["clip_project.extra.weight"] = torch.zeros(2)
    del state["clip_project.transformer.layers.1.mlp.fc2.bias"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointFormatError) as err:
        load_clipcap(tmp_path / "bad.pt", gpt=str(gpt_dir))
    assert "clip_project.extra.weight" in str(err.value)
    assert "clip_project.transformer.layers.1.mlp.fc2.bias" in str(err.value)
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointFormatError, match="not a ClipCap checkpoint"):
        load_clipcap(tmp_path / "other.pt", gpt=str(gpt_dir))
    torch.save(transformer_checkpoint(), tmp_path / "frozen.pt")
    with pytest.raises(CheckpointFormatError, match="no GPT-2 weights"):
        load_clipcap(tmp_path / "frozen.pt", tokenizer=gpt_dir)


def test_a_prefix_decoder_can_use_a_local_hugging_face_tokenizer(gpt_dir, tmp_path):
    from t2c_captum.decoders import PrefixDecoder, TextTokenizer, train_prefix_decoder

    space = FakeSpace(dim=8)
    tok = TextTokenizer("hf", str(gpt_dir))
    captions = TEXTS[:5]
    decoder = train_prefix_decoder(
        space,
        captions,
        tokenizer=tok,
        settings={"steps": 3, "batch_size": 4},
        progress=False,
        config={"n_embd": 16, "n_layer": 1, "n_head": 2, "prefix_length": 2},
    )
    assert decoder.vocabulary.coverage(tok.encode(captions[0])) == 1.0
    decoder.save(tmp_path / "hf")
    loaded = PrefixDecoder.load(tmp_path / "hf")
    assert loaded.tokenizer.describe() == {"kind": "hf", "path": str(gpt_dir)}
    x = space.encode_text(captions[:2])
    assert loaded.decode(x, project=False) == decoder.decode(x, project=False)
