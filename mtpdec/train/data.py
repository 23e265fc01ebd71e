"""The training corpus every machine has offline, and the vocabulary learned from it.

- ``stdlib_files()``: the Python standard library's ``.py`` files, sorted by their path
  relative to the library root; ``split(files)`` puts a file in the held-out part when
  the SHA-1 of that relative path falls in the last ``HELD_OUT_PERCENT`` of its range
  (by file, the same split on every machine with the same Python).
- ``train_vocab(texts, n_vocab)``: byte-level BPE learned by ``tokenizers`` with the
  ``qwen35`` pre-tokenizer mtpdec and llama.cpp use for such files, in the layout of
  ``mtpdec.synth.vocab`` (bytes, merges in rank order, special tokens), at most
  ``n_vocab`` entries.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers, trainers
from tokenizers.models import BPE

from mtpdec.synth.vocab import MIN_VOCAB, Vocab, vocab_from_merges
from mtpdec.tokenizer.bpe import pre_tokenizer

HELD_OUT_PERCENT = 5
PRE = "qwen35"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """Every ``.py`` file under the standard library (site-packages left out), sorted."""
    root = stdlib_root() if root is None else root
    found = [p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def held_out(relative: str) -> bool:
    """Whether the file at this root-relative POSIX path is in the held-out part."""
    bucket = int(hashlib.sha1(relative.encode()).hexdigest()[:8], 16) % 100
    return bucket >= 100 - HELD_OUT_PERCENT


def split(files: list[Path], root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files), each in the given order."""
    root = stdlib_root() if root is None else root
    out = [p for p in files if held_out(p.relative_to(root).as_posix())]
    chosen = set(out)
    return [p for p in files if p not in chosen], out


def read_text(path: Path) -> str:
    """A source file as text (undecodable bytes replaced; a few stdlib tests have some)."""
    return path.read_bytes().decode("utf-8", errors="replace")


def pre_tokenized(tok: HFTokenizer) -> HFTokenizer:
    """tok with the qwen35 pre-tokenizer mtpdec reads such files with."""
    tok.pre_tokenizer = pre_tokenizer(PRE)
    return tok


def train_vocab(texts: Iterable[str], n_vocab: int) -> Vocab:
    """A vocabulary of exactly ``n_vocab`` entries learned from ``texts`` (see the module
    docstring; unused ``[PAD<i>]`` entries fill it when the texts give fewer merges)."""
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"vocab {n_vocab} is below the minimum {MIN_VOCAB}")
    tok = pre_tokenized(HFTokenizer(BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=n_vocab - (MIN_VOCAB - 256),  # room for the special tokens
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    pairs = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]
    return vocab_from_merges(pairs, n_vocab)
