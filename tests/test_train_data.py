"""The trainer's corpus split and learned vocabulary (mtpdec.train.data)."""

from __future__ import annotations

import pytest

from mtpdec.synth.vocab import SPECIAL_TOKENS
from mtpdec.tokenizer.bpe import build_bpe, byte_chars
from mtpdec.train.data import (
    HELD_OUT_PERCENT,
    read_text,
    split,
    stdlib_files,
    stdlib_root,
    train_vocab,
)


def test_the_split_is_by_file_deterministic_and_about_the_stated_share():
    files = stdlib_files()
    train, held = split(files)
    assert len(files) > 500 and not set(train) & set(held)
    assert sorted(train + held) == sorted(files) and split(files) == (train, held)
    assert abs(100 * len(held) / len(files) - HELD_OUT_PERCENT) < 2
    root = stdlib_root()
    assert all(
        p.suffix == ".py" and "site-packages" not in p.relative_to(root).parts for p in files
    )


def test_learned_vocabulary_encodes_as_mtpdec_reads_it():
    """The merges, rebuilt in mtpdec's layout and read back through mtpdec's own BPE
    (as from a GGUF file), split held-out code into the same tokens as the trained
    tokenizers pipeline."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    from mtpdec.train.data import pre_tokenized

    train, held = split(stdlib_files())
    texts = [read_text(p) for p in train[:40]]
    vocab = train_vocab(texts, 1024)
    assert len(vocab.tokens) == 1024 and set(vocab.tokens[:256]) == set(byte_chars())
    assert [vocab.tokens[vocab.bos_id + i] for i in range(len(SPECIAL_TOKENS))] == [
        t for t, _ in SPECIAL_TOKENS
    ]
    ids = {t: i for i, t in enumerate(vocab.tokens)}
    ours = build_bpe(ids, vocab.merges, "qwen35", "trained")
    pairs = [tuple(m.split(" ", 1)) for m in vocab.merges]
    theirs = pre_tokenized(HFTokenizer(BPE(vocab=ids, merges=pairs)))
    sample = read_text(held[0])[:20000]
    got = ours.encode(sample).tokens
    assert got == theirs.encode(sample).tokens and len(got) < len(sample.encode()) / 2


def test_trained_weights_and_vocabulary_round_trip_through_a_gguf_file(tmp_path):
    """write_weights: a model's float weights and a learned vocabulary, quantized to the
    synth plan's Q4_K_M mix, load in mtpdec: its tokenizer reads the vocabulary as
    trained, and its f32 logits equal the torch forward over the file's own weights."""
    import numpy as np

    torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
    from mtpdec.models import load_model
    from mtpdec.synth import SynthOverrides
    from mtpdec.synth.plan import config_of, tensor_plan
    from mtpdec.synth.presets import resolve_shape
    from mtpdec.synth.writer import Labels, write_weights
    from mtpdec.train.model import Qwen35Torch, from_gguf

    shape = resolve_shape("qwen35-tiny", SynthOverrides(layers=4, ssm_groups=2, ssm_heads=4))
    trained = Qwen35Torch(config_of(shape), torch.float64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trained.parameters():  # norms ~1, matrices small
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.copy_(1 + 0.1 * noise if p.ndim == 1 else 0.05 * noise)
    values = {t.name: trained.weight(t.name).detach().numpy() for t in tensor_plan(shape)}
    values = {n: (-np.abs(v) if n.endswith("ssm_a") else v) for n, v in values.items()}  # g < 0
    train, held = split(stdlib_files())
    vocab = train_vocab([read_text(p) for p in train[:40]], shape.n_vocab)
    out = write_weights(
        tmp_path / "m.gguf", shape, vocab, values, Labels("t", "test"), force=False
    ).path

    model = load_model(out, activations="f32")
    sample = read_text(held[1])[:3000]
    ids = {t: i for i, t in enumerate(vocab.tokens)}
    want_ids = build_bpe(ids, vocab.merges, "qwen35", "trained").encode(sample).ids
    assert model.tokenizer.encode(sample, add_bos=False) == want_ids
    reread = from_gguf(out)
    for t in tensor_plan(shape):
        got, want = reread.weight(t.name).detach().numpy(), values[t.name]
        assert np.sqrt(np.mean((got - want) ** 2)) <= 0.15 * np.sqrt(np.mean(want**2)), t.name
    tokens = np.array(want_ids[:12], dtype=np.int32)
    logits = model.forward(tokens, 0, model.new_state(32))
    with torch.no_grad():
        ref, _ = reread.trunk(torch.from_numpy(tokens.astype(np.int64))[None])
    for a, b in zip(logits, ref[0].numpy()):
        assert np.corrcoef(a, b)[0, 1] > 0.99999


def test_held_out_prompts_end_with_a_def_line_of_a_held_out_file(tmp_path):
    from mtpdec.sweep import read_prompts
    from mtpdec.train.prompts import held_out_prompts, prompts_file_text

    root = tmp_path / "lib"
    root.mkdir()
    body = "".join(f"x{i} = {i}\n" for i in range(60))
    (root / "a.py").write_text(body + "def first(a, b):\n    return a\n")
    (root / "b.py").write_text(body + "y = '\\t'\ndef skipped(s):\n    pass\n")  # a backslash
    (root / "c.py").write_text("def too_early(x):\n    pass\n")  # no def after 600 chars
    files = sorted(root.glob("*.py"))
    prompts = held_out_prompts(files, root, count=5, chars=300)
    assert len(prompts) == 1 and prompts[0].endswith("def first(a, b):\n")
    assert prompts[0].startswith("x") and len(prompts[0]) <= 300 + len("def first(a, b):\n")
    path = tmp_path / "prompts.txt"
    path.write_text(prompts_file_text(prompts))
    assert read_prompts(path) == prompts
