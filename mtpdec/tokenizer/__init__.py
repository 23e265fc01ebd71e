"""GGUF-embedded vocabulary -> text and back, with the same token ids as llama.cpp.

``Tokenizer.from_gguf(f)`` reads ``tokenizer.ggml.*`` from an open file. Layout:
vocab.py (metadata, token attributes, special ids, end-of-generation set, special-token
splitting), spm.py (SentencePiece-style score-greedy merges), bpe.py (byte-level BPE on
the ``tokenizers`` library), core.py (the ``Tokenizer`` class).
"""

from mtpdec.tokenizer.core import Tokenizer

__all__ = ["Tokenizer"]
