"""Tokenizer: ids equal to llama.cpp's for Gemma-3 (SentencePiece-style vocab) and a synth
qwen35 file (byte-level BPE), decode/token_bytes against llama.cpp's detokenizer, EOG.

The expected ids are computed live by llama-cpp-python (vocab-only load); the corpus is
tests/data/tokenizer_corpus.json plus combinations of it made here.
"""

from __future__ import annotations

import ctypes
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from mtpdec.errors import MtpdecError
from mtpdec.loader import read_gguf
from mtpdec.synth import SynthOverrides, write_synth
from mtpdec.synth.vocab import build_vocab
from mtpdec.tokenizer import Tokenizer
from mtpdec.tokenizer.bpe import byte_chars
from mtpdec.tokenizer.spm import SpmMerger
from mtpdec.tokenizer.vocab import EOG_TEXTS

CORPUS_FILE = Path(__file__).parent / "data" / "tokenizer_corpus.json"
_PIECES = (
    "a", "Z", "é", "\u0301", "日", "🙂", "1", "23", " ", "  ", "\t", "\n", "\r\n", ".", ",",
    "'s", "'", '"', "<", "|", ">", "_", "-", "▁", "<start_of_turn>", "<|im_end|>", "<think>",
    "Ω", "ß", "\u00a0", "\u3000", "\u200b", "ﷺ", "𝐀", "\x00", "\x7f", "\u0085",
)  # fmt: skip


def build_corpus() -> list[str]:
    """The committed strings, then variants: space-prefixed, newline-suffixed, joined in
    pairs, random mixes of tricky pieces (seeded), and everything joined into one text;
    duplicates dropped."""
    base = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    out = list(base)
    out += [" " + s for s in base[::2]] + [s + "\n" for s in base[1::2]]
    out += [a + b for a, b in zip(base[::3], base[1::3])]
    out += [a + " " + b for a, b in zip(base[::5], base[2::5])]
    rng = random.Random(0)
    out += ["".join(rng.choices(_PIECES, k=rng.randint(1, 25))) for _ in range(80)]
    out.append(" ".join(base))
    return list(dict.fromkeys(out))  # unique, in order


CORPUS = build_corpus()


# ---------------------------------------------------------------- fixtures


@dataclass
class Pair:
    """Our tokenizer and llama.cpp's, for one file."""

    tok: Tokenizer
    llm: Any  # llama_cpp.Llama, vocab only
    llama_cpp: Any

    def ref_ids(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def ref_detokenize(self, ids: list[int]) -> bytes:
        """llama_detokenize without specials (drops a leading BOS, renders no control)."""
        arr = (ctypes.c_int32 * max(len(ids), 1))(*ids)
        size = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(size)
        n = self.llama_cpp.llama_detokenize(
            self.llm._model.vocab, arr, len(ids), buf, size, True, False
        )
        assert n >= 0
        return buf.raw[:n]

    def ref_piece(self, token_id: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = self.llama_cpp.llama_token_to_piece(self.llm._model.vocab, token_id, buf, 256, 0, False)
        return buf.raw[:n]

    def ref_is_eog(self, token_id: int) -> bool:
        return bool(self.llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token_id))


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install mtpdec[ref])"
    )


@pytest.fixture(scope="module")
def qwen_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "qwen35-tiny.gguf"
    write_synth(
        out,
        "qwen35-tiny",
        seed=0,
        overrides=SynthOverrides(),
        force=False,
        report=lambda _line: None,
    )
    return out


def _vocab_only_file(src: Path, out: Path, replace: dict[str, Any]) -> Path:
    """``src``'s metadata without its tensors (llama.cpp's vocab-only load reads none),
    with the values of ``replace`` (keys of ``src``, same value types) swapped in."""
    reader = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out, arch=reader.fields["general.architecture"].contents())
    for name, fld in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub = fld.types[-1] if fld.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, replace.get(name, fld.contents()), fld.types[0], sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def qwen2_path(qwen_path, tmp_path_factory) -> Path:
    """The synth vocabulary with the qwen2 pre-tokenizer."""
    out = tmp_path_factory.mktemp("tok") / "qwen2-vocab.gguf"
    return _vocab_only_file(qwen_path, out, {"tokenizer.ggml.pre": "qwen2"})


@pytest.fixture(scope="module")
def rules_path(qwen_path, tmp_path_factory) -> Path:
    """A byte-level vocabulary whose extra tokens carry the texts llama.cpp treats
    specially (EOG, FIM, always-rendered), all typed NORMAL but one CONTROL token. One
    text per FIM kind: with several, llama.cpp's pick depends on hash-map order."""
    fim = ["<|fim_prefix|>", "<fim_suffix>", "▁<MID>", "[PAD]", "<reponame>", "<|file_sep|>"]
    texts = sorted(EOG_TEXTS | set(fim))
    texts += ["<|channel|>", "<|message|>", "ĠĠ", "<|im_start|>"]
    tokens = [*byte_chars(), *texts]
    types = [1] * (len(tokens) - 1) + [3]
    eos = tokens.index("<|endoftext|>")
    out = tmp_path_factory.mktemp("tok") / "rules-vocab.gguf"
    replace = {
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": ["Ġ Ġ"],
        "tokenizer.ggml.eos_token_id": eos,
        "tokenizer.ggml.bos_token_id": eos,
        "tokenizer.ggml.padding_token_id": eos,
    }
    return _vocab_only_file(qwen_path, out, replace)


def _pair(path: Path, llama_cpp) -> Pair:
    with read_gguf(path) as f:
        tok = Tokenizer.from_gguf(f)
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return Pair(tok, llm, llama_cpp)


@pytest.fixture(scope="module")
def gemma(llama_cpp, gemma_path) -> Pair:
    return _pair(gemma_path, llama_cpp)


@pytest.fixture(scope="module")
def qwen(llama_cpp, qwen_path) -> Pair:
    return _pair(qwen_path, llama_cpp)


@pytest.fixture(scope="module")
def qwen2(llama_cpp, qwen2_path) -> Pair:
    return _pair(qwen2_path, llama_cpp)


@pytest.fixture(scope="module")
def rules(llama_cpp, rules_path) -> Pair:
    return _pair(rules_path, llama_cpp)


KINDS = [
    pytest.param("gemma", marks=[pytest.mark.llama, pytest.mark.model]),
    pytest.param("qwen", marks=pytest.mark.llama),
    pytest.param("qwen2", marks=pytest.mark.llama),
]
RULES = pytest.param("rules", marks=pytest.mark.llama)


@pytest.fixture(params=KINDS)
def pair(request) -> Pair:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=[*KINDS, RULES])
def any_pair(request) -> Pair:
    """The corpus files and the special-texts vocabulary."""
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------- ids vs llama.cpp


def _mismatches(pair: Pair, add_bos: bool, special: bool) -> list[str]:
    bad = []
    for s in CORPUS:
        ours = pair.tok.encode(s, add_bos=add_bos, special=special)
        ref = pair.ref_ids(s, add_bos=add_bos, special=special)
        if ours != ref:
            bad.append(f"{s[:60]!r}: {ours[:12]} != {ref[:12]}")
    return bad


def test_corpus_is_large_and_varied():
    assert len(CORPUS) >= 200
    assert len(set(CORPUS)) == len(CORPUS)
    assert any(ord(c) > 0xFFFF for s in CORPUS for c in s)  # supplementary planes
    assert "" not in CORPUS and " " in CORPUS


@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
def test_encode_matches_llama_cpp(pair, special):
    bad = _mismatches(pair, add_bos=True, special=special)
    assert not bad, f"{len(bad)}/{len(CORPUS)} differ:\n" + "\n".join(bad[:10])


def test_encode_without_bos_matches_llama_cpp(pair):
    bad = _mismatches(pair, add_bos=False, special=True)
    assert not bad, f"{len(bad)}/{len(CORPUS)} differ:\n" + "\n".join(bad[:10])


def test_empty_text(pair):
    assert pair.tok.encode("") == pair.ref_ids("")
    assert pair.tok.encode("", add_bos=False) == []


def test_default_affixes_are_llama_cpps(pair):
    for s in CORPUS[:20]:
        assert pair.tok.encode(s) == pair.ref_ids(s, add_bos=True, special=True)


# ---------------------------------------------------------------- decode vs llama.cpp


def test_decode_matches_llama_detokenize(pair):
    bad, round_trips = [], 0
    for s in CORPUS:
        ids = pair.tok.encode(s)
        ref = pair.ref_detokenize(ids).decode("utf-8", errors="replace")
        ours = pair.tok.decode(ids)
        if ours != ref:
            bad.append(f"{s[:60]!r}: {ours[:40]!r} != {ref[:40]!r}")
        round_trips += ref == s and ours == s
    assert not bad, "\n".join(bad[:10])
    assert round_trips >= 0.8 * len(CORPUS)  # special-token texts and the like do not


def test_token_bytes_concatenate_to_the_text(pair):
    bos = 1 if pair.tok.bos_id is not None else 0
    for s in CORPUS:
        ids = pair.tok.encode(s, special=False)
        joined = b"".join(pair.tok.token_bytes(t) for t in ids[bos:])
        assert joined == pair.ref_detokenize(ids), s
        if pair.ref_detokenize(ids) == s.encode():
            assert joined == s.encode()


def test_token_bytes_match_llama_pieces(any_pair):
    pair = any_pair
    tok = pair.tok
    normal_sample = range(0, tok.n_vocab, 97)
    unusual = [i for i in range(tok.n_vocab) if tok._vocab.attrs[i] != 4]  # not NORMAL
    for i in sorted({*normal_sample, *unusual}):
        assert tok.token_bytes(i) == pair.ref_piece(i), i


def test_is_eog_matches_llama_cpp(any_pair):
    pair = any_pair
    tok = pair.tok
    ours = [i for i in range(tok.n_vocab) if tok.is_eog(i)]
    assert ours == [i for i in range(tok.n_vocab) if pair.ref_is_eog(i)]
    assert tok.eos_id in ours


def test_ids_and_flags_match_llama_cpp(pair):
    tok = pair.tok
    assert tok.n_vocab == pair.llm.n_vocab()
    assert tok.eos_id == pair.llm.token_eos()
    if tok.add_bos:
        assert tok.bos_id == pair.llm.token_bos()
    else:
        assert tok.bos_id is None


# ---------------------------------------------------------------- model specifics


@pytest.mark.llama
@pytest.mark.model
def test_gemma_turn_markers(gemma):
    tok = gemma.tok
    assert (tok.n_vocab, tok.bos_id, tok.eos_id, tok.add_bos) == (262144, 2, 1, True)
    ids = tok.encode("<start_of_turn>user\nHi<end_of_turn>\n")
    assert ids[:2] == [2, 105] and 106 in ids
    assert 105 not in tok.encode("<start_of_turn>user", special=False)
    assert tok.is_eog(106) and tok.is_eog(1) and not tok.is_eog(105) and not tok.is_eog(2)
    assert tok.decode(ids) == "user\nHi\n"  # control tokens render as nothing
    assert tok.token_bytes(105) == b"" and tok.token_bytes(2) == b""
    byte_a = tok._vocab.ids["<0x41>"]
    assert tok.token_bytes(byte_a) == b"A"


@pytest.mark.llama
@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
def test_special_texts_match_llama_cpp(rules, special):
    texts = [t for t in rules.tok._vocab.tokens[256:] if t != "ĠĠ"]
    for text in [" ".join(texts), "".join(texts), "x<|end|>y</s>z<|fim_pad|>"]:
        assert rules.tok.encode(text, special=special) == rules.ref_ids(text, special=special)
    end, s_end = (rules.tok._vocab.ids[t] for t in ("<|end|>", "</s>"))
    assert not rules.tok.is_eog(end) and not rules.tok.is_eog(s_end)  # the two exceptions


@pytest.mark.llama
def test_qwen_specials(qwen):
    tok = qwen.tok
    assert tok.bos_id is None and not tok.add_bos
    assert tok.encode("<|im_start|>user", add_bos=True)[0] == tok._vocab.ids["<|im_start|>"]
    think = tok._vocab.ids["<think>"]
    assert think in tok.encode("<think>x", special=False)  # user-defined: matched always
    assert tok.token_bytes(think) == b"<think>"
    assert tok.is_eog(tok._vocab.ids["<|im_end|>"]) and tok.is_eog(tok._vocab.ids["<|endoftext|>"])


# ---------------------------------------------------------------- no llama.cpp needed


@dataclass
class FakeMeta:
    """Metadata stand-in for GGUFFile (``get`` and ``path``)."""

    kv: dict[str, Any] = field(default_factory=dict)
    path: str = "fake.gguf"

    def get(self, key: str, default: Any = None) -> Any:
        return self.kv.get(key, default)


def _synth_meta() -> FakeMeta:
    v = build_vocab(4096)
    return FakeMeta(
        {
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "qwen35",
            "tokenizer.ggml.tokens": v.tokens,
            "tokenizer.ggml.token_type": v.token_types,
            "tokenizer.ggml.merges": v.merges,
            "tokenizer.ggml.bos_token_id": v.bos_id,
            "tokenizer.ggml.eos_token_id": v.eos_id,
            "tokenizer.ggml.add_bos_token": False,
        }
    )


def _spm_meta(add_space_prefix: bool) -> FakeMeta:
    """A small SentencePiece-style vocab: specials, 256 byte tokens, pieces with scores."""
    pieces = ["▁", "a", "b", "c", "▁a", "ab", "bc", "▁ab", "abc", "<ctl>"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 1) + [3]
    scores = [0.0] * 259 + [-1.0, -2.0, -2.0, -2.0, -3.0, -4.0, -4.0, -5.0, -6.0, 0.0]
    return FakeMeta(
        {
            "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.add_space_prefix": add_space_prefix,
        }
    )


def test_bpe_round_trips_without_llama_cpp():
    tok = Tokenizer.from_gguf(_synth_meta())
    for s in CORPUS:
        ids = tok.encode(s, special=False)
        assert b"".join(tok.token_bytes(t) for t in ids) == s.encode(), s
        assert tok.decode(ids) == s


def test_bpe_rules_outside_the_vocab_or_repeated_are_dropped():
    meta = _synth_meta()
    clean = Tokenizer.from_gguf(meta)
    merges = meta.kv["tokenizer.ggml.merges"]
    meta.kv["tokenizer.ggml.merges"] = [*merges, "zz qq", "nospace", merges[0], " Ġ x"]
    messy = Tokenizer.from_gguf(meta)  # the repeated rule keeps its first rank
    for s in CORPUS[:100]:
        assert messy.encode(s) == clean.encode(s), s


def test_spm_merges_by_score_then_leftmost():
    tok = Tokenizer.from_gguf(_spm_meta(add_space_prefix=False))
    ids = tok._vocab.ids
    assert tok.encode("abc", add_bos=False) == [ids["abc"]]  # "ab" or "bc", then "abc"
    assert tok.encode("bcb", add_bos=False) == [ids["bc"], ids["b"]]
    # Characters outside the vocab fall back to their UTF-8 bytes.
    assert tok.encode("aé", add_bos=False) == [ids["a"], ids["<0xC3>"], ids["<0xA9>"]]
    assert tok.decode(tok.encode("aé c")) == "aé c"


def test_spm_space_prefix():
    tok = Tokenizer.from_gguf(_spm_meta(add_space_prefix=True))
    ids = tok._vocab.ids
    assert tok.encode("ab") == [ids["<s>"], ids["▁ab"]]
    # A fragment after a special token gets the prefix again.
    assert tok.encode("a<ctl>a", add_bos=False) == [ids["▁a"], ids["<ctl>"], ids["▁a"]]
    assert tok.decode(tok.encode("ab c")) == "ab c"
    assert tok.token_bytes(ids["▁ab"]) == b" ab"


def test_spm_continuation_keeps_its_first_space():
    tok = Tokenizer.from_gguf(_spm_meta(add_space_prefix=True))
    ids = [tok._vocab.ids["▁ab"], tok._vocab.ids["▁a"]]  # generated after some text
    assert tok.decode(ids) == "ab a"  # a text of its own: the encoder's prefix removed
    assert tok.decode(ids, continuation=True) == " ab a"
    assert tok.decode(ids, continuation=True).encode() == b"".join(map(tok.token_bytes, ids))


def test_spm_merger_ties_go_to_the_left_pair():
    ids = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4}
    assert SpmMerger(ids, np.array([0, 0, 0, -1.0, -1.0])).merge("abc") == ["ab", "c"]
    assert SpmMerger(ids, np.array([0, 0, 0, -1.0, -0.5])).merge("abc") == ["a", "bc"]


def test_spm_merger_is_greedy_over_the_whole_fragment():
    merger = SpmMerger({"x": 0, "y": 1, "xy": 2, "xyx": 3}, np.array([-1.0, -1.0, -2.0, -1.5]))
    assert merger.merge("xyxy") == ["xyx", "y"]
    assert merger.merge("") == []


@pytest.mark.parametrize(
    "kv, message",
    [
        ({}, "no tokenizer.ggml.model"),
        ({"tokenizer.ggml.model": "bert"}, "unsupported tokenizer model 'bert'"),
        ({"tokenizer.ggml.model": "llama"}, "no tokenizer.ggml.tokens"),
        (
            {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b"]},
            "no tokenizer.ggml.merges",
        ),
        (
            {
                "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.pre": "falcon",
                "tokenizer.ggml.tokens": ["a", "b"],
                "tokenizer.ggml.merges": ["a b"],
            },
            "unsupported tokenizer.ggml.pre 'falcon'",
        ),
        (
            {
                "tokenizer.ggml.model": "llama",
                "tokenizer.ggml.tokens": ["a", "b"],
                "tokenizer.ggml.scores": [0.0],
            },
            "tokenizer.ggml.scores has 1 numeric entries",
        ),
        (  # as the reader keeps bytes that are not UTF-8 (surrogate escapes)
            {
                "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.tokens": ["a", "b\udcff", "ab"],
                "tokenizer.ggml.merges": ["a b"],
            },
            r"tokenizer.ggml.tokens\[1\] is not valid UTF-8",
        ),
        (
            {
                "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.tokens": ["a", "b", "ab"],
                "tokenizer.ggml.merges": ["a b", "\udce2 b"],
            },
            r"tokenizer.ggml.merges\[1\] is not valid UTF-8",
        ),
        (
            {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [[1, 2], "b"]},
            "tokenizer.ggml.tokens is not an array of strings",
        ),
    ],
)
def test_bad_metadata_is_one_line_error(kv, message):
    with pytest.raises(MtpdecError, match=message) as exc:
        Tokenizer.from_gguf(FakeMeta(kv))
    assert "\n" not in str(exc.value) and "fake.gguf" in str(exc.value)


def test_lone_surrogate_is_an_error():
    tok = Tokenizer.from_gguf(_spm_meta(add_space_prefix=False))
    with pytest.raises(MtpdecError, match="lone surrogate '\\\\udcff' at index 1"):
        tok.encode("a\udcff")
