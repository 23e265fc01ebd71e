"""The trainer's corpus split and learned vocabulary (mtpdec.train.data)."""

from __future__ import annotations

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
