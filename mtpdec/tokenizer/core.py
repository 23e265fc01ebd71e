"""``Tokenizer``: text -> token ids -> bytes, equal to llama.cpp for the same GGUF file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mtpdec.errors import MtpdecError
from mtpdec.tokenizer import bpe
from mtpdec.tokenizer.spm import SpmMerger
from mtpdec.tokenizer.vocab import (
    BPE,
    BYTE,
    CONTROL,
    NORMAL,
    SPM,
    UNKNOWN,
    USER_DEFINED,
    Metadata,
    SpecialMatcher,
    Vocab,
    read_vocab,
    string_array,
)

_SPACE_MARK = "\u2581"  # ▁, SentencePiece's space

# (fragment text, follows a special token or the start) -> token ids
FragmentEncoder = Callable[[str, bool], list[int]]


class Tokenizer:
    """The vocabulary embedded in a GGUF file, with llama.cpp's encode and decode rules.

    Two kinds: ``tokenizer.ggml.model`` ``llama`` (SentencePiece-style: score-greedy
    merges, ``▁`` for spaces, byte fallback) and ``gpt2`` (byte-level BPE with merges,
    pre-tokenizer ``qwen2`` or ``qwen35``). Build one with ``from_gguf``.
    """

    n_vocab: int
    bos_id: int | None  # None when the model does not add BOS
    eos_id: int | None
    add_bos: bool
    add_eos: bool  # llama.cpp also appends EOS when it adds BOS (tokenizer.ggml.add_eos_token)

    def __init__(self, vocab: Vocab, encode_fragment: FragmentEncoder) -> None:
        self._vocab = vocab
        self._encode_fragment = encode_fragment
        self._normal_piece = _KINDS[vocab.model].normal_piece
        self._matcher = SpecialMatcher(vocab.specials, vocab.attrs)
        self._bytes: list[bytes | None] = [None] * len(vocab.tokens)
        self.n_vocab = len(vocab.tokens)
        self.add_bos = vocab.add_bos and vocab.id_of("bos") is not None
        self.add_eos = vocab.add_eos and vocab.id_of("eos") is not None
        self.bos_id = vocab.id_of("bos") if self.add_bos else None
        self.eos_id = vocab.id_of("eos")

    @classmethod
    def from_gguf(cls, f: Metadata) -> Tokenizer:
        """The tokenizer of an open GGUF file (a ``GGUFFile``; only ``f.get`` and ``f.path``
        are used).

        MtpdecError (one line) for a missing vocabulary, an unsupported
        ``tokenizer.ggml.model`` or an unsupported BPE pre-tokenizer.
        """
        vocab = read_vocab(f)
        return cls(vocab, _KINDS[vocab.model].encoder(vocab, f))

    # ------------------------------------------------------------------ encode
    def encode(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        """Token ids of ``text``, as llama.cpp's ``llama_tokenize(text, add_special=add_bos,
        parse_special=special)``.

        add_bos: None or True -> the model's affixes, False -> none. The affixes are BOS
        when the model adds one (``bos_id`` is not None) and EOS when it adds one
        (``add_eos``): llama.cpp's ``add_special``. A model without BOS adds none.
        special: match control tokens written in the text (``<start_of_turn>``) as their
        ids; user-defined tokens are matched either way.
        MtpdecError for text that is not valid Unicode (a lone surrogate).
        """
        _check_text(text)
        affixes = add_bos is not False
        out: list[int] = [self.bos_id] if affixes and self.bos_id is not None else []
        after_special = True  # SPM: a fragment at the start or after a special gets "▁"
        for frag in self._matcher.split(text, special):
            if isinstance(frag, int):
                out.append(frag)
                after_special = True
            else:
                out.extend(self._encode_fragment(frag, after_special))
                after_special = False
        if affixes and self.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return out

    # ------------------------------------------------------------------ decode
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes this token adds to the output text, as llama.cpp's
        ``llama_token_to_piece(special=False)``: byte tokens give their byte, ``▁`` is a
        space (SPM), the GPT-2 byte map is undone (BPE), user-defined tokens give their
        text, control/unknown/unused tokens give ``b""``. IndexError outside the vocab.
        """
        if token_id < 0:
            raise IndexError(f"token id {token_id} is negative")
        cached = self._bytes[token_id]
        if cached is None:
            cached = self._bytes[token_id] = self._piece(token_id)
        return cached

    def _piece(self, token_id: int) -> bytes:
        attr = self._vocab.attrs[token_id]
        text = self._vocab.tokens[token_id]
        if attr & (CONTROL | UNKNOWN):
            return b""
        if attr & USER_DEFINED:
            return text.encode("utf-8", "surrogateescape")
        if attr & NORMAL:
            return self._normal_piece(text)
        if attr & BYTE:
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                return b"\x00"  # llama.cpp's strtol reads a malformed <0xXX> as 0
        return b""  # unused / undefined

    def decode(self, ids: Sequence[int], continuation: bool = False) -> str:
        """Text of ``ids``, as llama.cpp's detokenize without specials: a leading BOS (and
        a trailing EOS when the model adds one) is dropped, control tokens give nothing.
        For SPM models that prefix a space when encoding (``add_space_prefix``), one
        leading space is removed, BOS or not (llama.cpp's C detokenizer keeps it after a
        BOS, llama-cpp-python drops it), unless ``continuation``: ids that follow other
        text (generated tokens) keep their first space, as when streamed token by token.
        Invalid UTF-8 becomes U+FFFD.
        """
        ids = list(ids)
        bos, eos = self._vocab.id_of("bos"), self._vocab.id_of("eos")
        if ids and self.add_bos and ids[0] == bos:
            ids = ids[1:]
        if ids and self.add_eos and ids[-1] == eos:
            ids = ids[:-1]
        data = b"".join(self.token_bytes(t) for t in ids)
        prefixed = self._vocab.model == SPM and self._vocab.add_space_prefix
        if prefixed and not continuation and data[:1] == b" ":
            data = data[1:]
        return data.decode("utf-8", errors="replace")

    def is_eog(self, token_id: int) -> bool:
        """Whether the token ends generation for llama.cpp: EOS, EOT (``<end_of_turn>``,
        ``<|im_end|>`` ...), EOM, FIM pad/repo/separator, and tokens with those texts."""
        return token_id in self._vocab.eog

    def __repr__(self) -> str:
        return f"Tokenizer({self._vocab.model}/{self._vocab.pre}, n_vocab={self.n_vocab})"


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MtpdecError(
            f"text to encode has a lone surrogate {text[exc.start]!r} at index {exc.start} "
            "(not valid Unicode)"
        ) from None


def _spm_encoder(vocab: Vocab, f: Metadata) -> FragmentEncoder:
    """Encode one SPM fragment: optional space prefix, spaces as ``▁``, then merges."""
    merger = SpmMerger(vocab.ids, vocab.scores, vocab.id_of("unk"))
    prefix = vocab.add_space_prefix

    def encode(text: str, after_special: bool) -> list[int]:
        if prefix and after_special:
            text = " " + text
        return merger.encode(text.replace(" ", _SPACE_MARK))

    return encode


def _spm_piece(text: str) -> bytes:
    return text.replace(_SPACE_MARK, " ").encode("utf-8", "surrogateescape")


def _bpe_encoder(vocab: Vocab, f: Metadata) -> FragmentEncoder:
    """Encode one BPE fragment with a ``tokenizers`` pipeline built from the file's merges."""
    merges = string_array(f, "merges", utf8=True)
    if merges is None:
        raise MtpdecError(f"{f.path}: no tokenizer.ggml.merges string array in the metadata")
    string_array(f, "tokens", utf8=True)  # the ``tokenizers`` library takes UTF-8 only
    hf = bpe.build_bpe(vocab.ids, merges, vocab.pre, f.path)

    def encode(text: str, _after_special: bool) -> list[int]:
        return hf.encode(text, add_special_tokens=False).ids

    return encode


@dataclass(frozen=True)
class _Kind:
    """How one ``tokenizer.ggml.model`` encodes fragments and spells normal tokens."""

    encoder: Callable[[Vocab, Metadata], FragmentEncoder]
    normal_piece: Callable[[str], bytes]


_KINDS = {
    SPM: _Kind(_spm_encoder, _spm_piece),
    BPE: _Kind(_bpe_encoder, bpe.decode_byte_level),
}
