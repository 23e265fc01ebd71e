"""GPT-2 style byte-level BPE on ``tokenizers`` (Hugging Face): a Split pre-tokenizer with
the regex llama.cpp uses for the file's ``tokenizer.ggml.pre``, the byte -> printable
character map of GPT-2, then BPE with the file's merges in rank order.

The patterns are llama.cpp's (src/llama-vocab.cpp, ``llm_tokenizer_bpe``): the
tokenizer.json originals with ``(?i:'s|...)`` spelled as ASCII case pairs, which is what
llama.cpp's hand-written splitters for these pre types match.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from mtpdec.errors import MtpdecError

_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_SPACES = r"|\s*[\r\n]+|\s+(?!\S)|\s+"

# tokenizer.ggml.pre -> the pre-tokenizer regex (Split, isolated matches).
PRE_TOKENIZERS: dict[str, str] = {
    "qwen2": _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*" + _SPACES,
    "qwen35": _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    + _SPACES,
}


@functools.cache
def byte_chars() -> tuple[str, ...]:
    """GPT-2's printable stand-in character for each byte value (index = byte).

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for
    themselves; the other 68 bytes take U+0100, U+0101, ... in byte order.
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    kept = set(keep)
    spare = iter(range(0x100, 0x200))
    return tuple(chr(b) if b in kept else chr(next(spare)) for b in range(256))


@functools.cache
def char_bytes() -> dict[str, int]:
    """The inverse of ``byte_chars``: stand-in character -> byte value."""
    return {c: b for b, c in enumerate(byte_chars())}


def merge_pairs(lines: Sequence[str], ids: dict[str, int]) -> list[tuple[str, str]]:
    """Merge rules ``"left right"`` as pairs, in rank order.

    The separator is the first space after the first character (a token may start with
    one). Duplicates keep their first rank, as in llama.cpp. Rules without a separator,
    or whose parts or result are not tokens, are dropped: ``tokenizers`` rejects them
    (files converted from a working tokenizer.json have none).
    """
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    for line in lines:
        cut = line.find(" ", 1)
        left, right = line[:cut], line[cut + 1 :]
        if cut < 0 or (left, right) in seen:
            continue
        if left in ids and right in ids and left + right in ids:
            seen.add((left, right))
            pairs.append((left, right))
    return pairs


def bpe_model(ids: dict[str, int], lines: Sequence[str]) -> models.BPE:
    """The BPE model of a vocabulary and its merge rules (``merge_pairs`` semantics).

    Fast path: the rules split at their first space, handed over unchecked; it gives the
    same pairs as ``merge_pairs`` whenever ``tokenizers`` accepts them (every part and
    result a token, no rule starting with a space) and no rule repeats. Otherwise the
    rules are filtered first. (Checking 250K rules in Python costs more than the build.)
    """
    pairs = [tuple(line.split(" ", 1)) for line in lines]
    if len(set(pairs)) == len(pairs):
        try:
            return models.BPE(vocab=ids, merges=pairs)
        except Exception:  # tokenizers raises a plain Exception for a rule outside the vocab
            pass
    return models.BPE(vocab=ids, merges=merge_pairs(lines, ids))


def pre_tokenizer(pre: str, path: object = "") -> pre_tokenizers.Sequence:
    """The Split (llama.cpp's regex for ``pre``) + byte-level pre-tokenizer of a gpt2
    vocabulary; MtpdecError for an unknown pre type."""
    try:
        pattern = PRE_TOKENIZERS[pre]
    except KeyError:
        raise MtpdecError(
            f"{path}: unsupported tokenizer.ggml.pre {pre!r} for a gpt2 vocabulary "
            f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})"
        ) from None
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def build_bpe(ids: dict[str, int], merges: Sequence[str], pre: str, path: object) -> HFTokenizer:
    """A ``tokenizers`` pipeline for one BPE vocabulary; MtpdecError for an unknown pre type."""
    splitter = pre_tokenizer(pre, path)
    tok = HFTokenizer(bpe_model(ids, merges))
    tok.pre_tokenizer = splitter
    return tok


def decode_byte_level(text: str) -> bytes:
    """The bytes a byte-level token stands for; a character outside the map is kept as
    llama.cpp shows it: ``[UNK_BYTE_0x<its utf-8 in hex><the token>]``."""
    table = char_bytes()
    out = bytearray()
    for ch in text:
        b = table.get(ch)
        if b is not None:
            out.append(b)
        else:
            raw = ch.encode("utf-8", "surrogateescape")
            out += (
                b"[UNK_BYTE_0x"
                + raw.hex().encode()
                + text.encode("utf-8", "surrogateescape")
                + b"]"
            )
    return bytes(out)
