"""The vocabulary as llama.cpp sees it: token texts, scores, per-token attributes, the
special ids, the end-of-generation set and the special-token partition of a text.

Everything here follows llama.cpp's ``llama_vocab::impl::load`` (src/llama-vocab.cpp) so
that token ids come out equal: the same defaults per ``tokenizer.ggml.model``, the same
token-type -> attribute map, the same rules that turn tokens with well-known texts
(``<end_of_turn>``, ``<|im_end|>`` ...) into control and end-of-generation tokens, and the
same order of matching special tokens (longest text first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mtpdec.errors import MtpdecError

# llama_token_attr bits.
UNKNOWN, UNUSED, NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 2, 4, 8, 16, 32

# tokenizer.ggml.token_type values (llama_token_type) -> attribute; others -> 0 (undefined).
_TYPE_ATTR = {1: NORMAL, 2: UNKNOWN, 3: CONTROL, 4: USER_DEFINED, 5: UNUSED, 6: BYTE}

SPM, BPE = "llama", "gpt2"  # the tokenizer.ggml.model values supported

# Default special ids and flags per tokenizer model, before the metadata overrides them.
_DEFAULTS: dict[str, dict[str, Any]] = {
    SPM: {"bos": 1, "eos": 2, "unk": 0, "add_bos": True, "add_space_prefix": True},
    BPE: {"bos": 11, "eos": 11, "unk": None, "add_bos": False, "add_space_prefix": False},
}

# Texts llama.cpp treats as end of generation (and marks as control tokens).
EOG_TEXTS = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
        "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
        "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
    }
)  # fmt: skip
# Fill-in-the-middle texts, looked up by text when the metadata has no id for them;
# llama.cpp marks them control, and the pad/repo/separator ones end generation.
_FIM_TEXTS: dict[str, frozenset[str]] = {
    "fim_pre": frozenset({"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>",
                          "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}),
    "fim_suf": frozenset({"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>",
                          "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}),
    "fim_mid": frozenset({"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>",
                          "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}),
    "fim_pad": frozenset({"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}),
    "fim_rep": frozenset({"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                          "<reponame>"}),
    "fim_sep": frozenset({"<|file_sep|>"}),
}  # fmt: skip
_FIM_EOG = ("fim_pad", "fim_rep", "fim_sep")
# Tokens llama.cpp always renders and matches in plain text (gpt-oss).
_FORCED_USER_DEFINED = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})

# Metadata keys of the special ids (tokenizer.ggml.<name>_token_id).
_ID_KEYS = ("bos", "eos", "eot", "eom", "unk", "sep", "pad", "mask") + tuple(_FIM_TEXTS)
_DEPRECATED_FIM_KEYS = {"prefix": "fim_pre", "suffix": "fim_suf", "middle": "fim_mid"}


class Metadata(Protocol):
    """What the vocabulary reads from a GGUF file (``GGUFFile`` has both)."""

    path: Any

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass
class Vocab:
    """Token texts and what llama.cpp derives from the metadata.

    ``attrs[i]`` holds llama_token_attr bits; ``specials`` lists (text, id) of every
    control, user-defined and unknown token, longest UTF-8 text first, the order in
    which llama.cpp splits them out of a text.
    """

    model: str
    pre: str
    tokens: list[str]
    ids: dict[str, int]
    attrs: list[int]
    scores: np.ndarray  # float32, per id (0 without a scores array)
    special_ids: dict[str, int | None]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    eog: frozenset[int]
    specials: list[tuple[str, int]]

    def id_of(self, name: str) -> int | None:
        return self.special_ids.get(name)


def _key(name: str) -> str:
    return f"tokenizer.ggml.{name}"


def _array(meta: Metadata, name: str, n: int, dtype: type) -> np.ndarray | None:
    """A per-token numeric array, or None when absent; MtpdecError when too short."""
    value = meta.get(_key(name))
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 1 or len(arr) < n or not np.issubdtype(arr.dtype, np.number):
        raise MtpdecError(
            f"{meta.path}: {_key(name)} has {len(arr) if arr.ndim == 1 else arr.shape} "
            f"numeric entries, the vocabulary has {n} tokens"
        )
    return arr[:n].astype(dtype)


def read_vocab(meta: Metadata) -> Vocab:
    """The vocabulary of a GGUF file; MtpdecError for a missing or unsupported tokenizer."""
    model = meta.get(_key("model"))
    if model is None:
        raise MtpdecError(f"{meta.path}: no {_key('model')} in the metadata (no tokenizer)")
    if model not in _DEFAULTS:
        raise MtpdecError(
            f"{meta.path}: unsupported tokenizer model {model!r} "
            f"(supported: {', '.join(sorted(_DEFAULTS))})"
        )
    tokens = _tokens(meta)
    n = len(tokens)
    scores = _array(meta, "scores", n, np.float32)
    defaults = _DEFAULTS[model]
    vocab = Vocab(
        model=model,
        pre=str(meta.get(_key("pre"), "default")),
        tokens=tokens,
        ids=dict(zip(tokens, range(n))),
        attrs=_attrs(_array(meta, "token_type", n, np.int64), n),
        scores=np.zeros(n, np.float32) if scores is None else scores,
        special_ids=_special_ids(meta, n, defaults),
        add_bos=bool(meta.get(_key("add_bos_token"), defaults["add_bos"])),
        add_eos=bool(meta.get(_key("add_eos_token"), False)),
        add_space_prefix=bool(meta.get(_key("add_space_prefix"), defaults["add_space_prefix"])),
        eog=frozenset(),
        specials=[],
    )
    _apply_text_rules(vocab)
    vocab.specials = special_order(vocab.tokens, vocab.attrs)
    return vocab


def string_array(meta: Metadata, name: str, utf8: bool = False) -> list[str] | None:
    """The metadata string array ``tokenizer.ggml.<name>`` (None when absent);
    MtpdecError when it holds anything but strings or, with ``utf8``, an entry that is
    not valid UTF-8 (the reader keeps such bytes as surrogate escapes)."""
    value = meta.get(_key(name))
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MtpdecError(f"{meta.path}: {_key(name)} is not an array of strings")
    if utf8:
        try:
            "".join(value).encode("utf-8")
        except UnicodeEncodeError:
            bad = next(i for i, v in enumerate(value) if _surrogates(v))
            raise MtpdecError(
                f"{meta.path}: {_key(name)}[{bad}] is not valid UTF-8 ({value[bad]!r})"
            ) from None
    return value


def _surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _tokens(meta: Metadata) -> list[str]:
    tokens = string_array(meta, "tokens")
    if not tokens:
        raise MtpdecError(f"{meta.path}: no {_key('tokens')} string array in the metadata")
    if "" in tokens:  # llama.cpp renames empty texts so that every text maps to one id
        tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    return tokens


def _attrs(types: np.ndarray | None, n: int) -> list[int]:
    """Per-token attribute bits from token types (all NORMAL without a type array)."""
    if types is None:
        return [NORMAL] * n
    table = np.zeros(max(_TYPE_ATTR) + 1, np.int64)
    for t, attr in _TYPE_ATTR.items():
        table[t] = attr
    known = (types >= 0) & (types < len(table))
    return np.where(known, table[np.where(known, types, 0)], 0).tolist()


def _special_ids(meta: Metadata, n: int, defaults: dict[str, Any]) -> dict[str, int | None]:
    """Special ids: the model's defaults, replaced by in-range metadata values."""
    ids: dict[str, int | None] = {name: None for name in _ID_KEYS}
    for name in ("bos", "eos", "unk"):
        default = defaults[name]
        ids[name] = default if default is not None and default < n else None
    keys = [(name, name) for name in _ID_KEYS]
    keys += [(old, new) for old, new in _DEPRECATED_FIM_KEYS.items()]
    for key_name, name in keys:
        value = meta.get(_key(f"{key_name}_token_id"))
        if isinstance(value, (int, np.integer)) and 0 <= value < n:
            ids[name] = int(value)
    return ids


def _apply_text_rules(vocab: Vocab) -> None:
    """llama.cpp's text-based fix-ups: FIM ids found by text, control marks, EOG set."""
    attrs, ids, special = vocab.attrs, vocab.ids, vocab.special_ids
    for name, texts in _FIM_TEXTS.items():
        # Only when the metadata gave no usable id. llama.cpp takes the first match of
        # its hash-map walk (unspecified order); here the lowest id.
        found = min((ids[t] for t in texts if t in ids), default=None)
        if special[name] is None and found is not None:
            attrs[found] |= CONTROL
            special[name] = found
    eog = {ids[text] for text in EOG_TEXTS & ids.keys()}
    for i in eog:
        attrs[i] |= CONTROL
    for text in _FORCED_USER_DEFINED & ids.keys():
        attrs[ids[text]] = USER_DEFINED
    named = (special[name] for name in ("eos", "eot", "eom", *_FIM_EOG))
    eog.update(i for i in named if i is not None)
    vocab.eog = frozenset(_drop_non_eog(vocab, eog))


def _drop_non_eog(vocab: Vocab, eog: set[int]) -> set[int]:
    """Two exceptions llama.cpp makes: ``<|end|>`` is not EOG in vocabularies that also
    end turns with ``<|return|>``/``<|call|>`` (or ``<|calls|>``/``<|flush|>``), and
    ``</s>`` is a normal token in vocabularies with ``<|tool_response>``/``<|plamo:eos|>``."""
    texts = {vocab.tokens[i]: i for i in eog}
    has_call = "<|call|>" in texts or "<|calls|>" in texts
    if "<|end|>" in texts and has_call and ("<|return|>" in texts or "<|flush|>" in texts):
        eog.discard(texts["<|end|>"])
        vocab.attrs[texts["<|end|>"]] = USER_DEFINED
    if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
        eog.discard(texts["</s>"])
        vocab.attrs[texts["</s>"]] = NORMAL
    return eog


def special_order(tokens: list[str], attrs: list[int]) -> list[tuple[str, int]]:
    """(text, id) of control, user-defined and unknown tokens, longest UTF-8 text first
    (ties by id: llama.cpp's sort is not stable, so its tie order is unspecified)."""
    mask = CONTROL | USER_DEFINED | UNKNOWN
    found = [(tokens[i], i) for i in np.flatnonzero(np.asarray(attrs) & mask).tolist()]
    found.sort(key=lambda ti: -len(ti[0].encode("utf-8", "surrogateescape")))
    return found


class SpecialMatcher:
    """Splits a text around special tokens the way llama.cpp's tokenizer_st_partition does:
    for each special token in order (longest first), every remaining text fragment is cut
    at each left-to-right occurrence of it. Control and unknown tokens are matched only
    when parsing specials; user-defined ones always are.
    """

    def __init__(self, specials: list[tuple[str, int]], attrs: list[int]) -> None:
        self._groups = {True: _group(specials), False: _group(
            [(t, i) for t, i in specials if not attrs[i] & (CONTROL | UNKNOWN)]
        )}  # fmt: skip

    def candidates(self, text: str, special: bool) -> list[tuple[int, str, int]]:
        """(order, text, id) of the special tokens occurring in ``text``, in order."""
        found = []
        for key, group in self._groups[special].items():
            if key in text:
                found.extend(entry for entry in group if entry[1] in text)
        found.sort()
        return found

    def split(self, text: str, special: bool) -> list[str | int]:
        """Text fragments (str, never empty) and special token ids (int), in text order."""
        frags: list[str | int] = [text] if text else []
        for _, tok_text, tok_id in self.candidates(text, special):
            out: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or tok_text not in frag:
                    out.append(frag)
                    continue
                for k, part in enumerate(frag.split(tok_text)):
                    if k:
                        out.append(tok_id)
                    if part:
                        out.append(part)
            frags = out
        return frags


def _group(specials: Iterable[tuple[str, int]]) -> dict[str, list[tuple[int, str, int]]]:
    """Specials keyed by their first two characters, so that a text is scanned only for
    the groups whose key it contains (Gemma has ~6000 ``<unused...>`` control tokens)."""
    groups: dict[str, list[tuple[int, str, int]]] = {}
    for order, (text, tok_id) in enumerate(specials):
        groups.setdefault(text[:2], []).append((order, text, tok_id))
    return groups
