"""The model interface every architecture implements, and the registry that picks one.

A model owns its open GGUF file, config and tokenizer. ``forward`` runs any number of
tokens through the network: 1 for decode, k for verify, the whole prompt for prefill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.quants import dequantize_raw
from mtpdec.tensor import Tensor

if TYPE_CHECKING:
    from mtpdec.cpu.backend import Ops
    from mtpdec.cpu.linear import Linear
    from mtpdec.loader.config import ModelConfig
    from mtpdec.loader.reader import GGUFFile
    from mtpdec.models.hybrid import Backends
    from mtpdec.tokenizer import Tokenizer


class StateLike(Protocol):
    """Per-sequence state (KV caches, recurrent state) for positions ``0..length-1``.

    rollback(length): keep the first ``length`` positions, within the latest forward
    (which must have written snapshots when the model has recurrent layers).
    """

    n_ctx: int
    length: int

    def rollback(self, length: int) -> None: ...


class Model(Protocol):
    """A loaded model.

    forward(tokens, start_pos, state, last_only=False, prefill=False, snapshots=False)
      -> float32 logits
      tokens:    int32 (k,), k >= 1, token ids < n_vocab.
      start_pos: position of tokens[0]; must equal ``state.length``.
      Returns (k, n_vocab) logits (row i predicts the token after tokens[i]), or
      (1, n_vocab) for the last token only when ``last_only``. Each row is bitwise equal
      to feeding the tokens one at a time, whatever k, unless ``prefill``: the tokens are
      a prompt and may take the faster batched path (equal to about 1e-6). Advances
      ``state.length`` by k. ``snapshots`` (a verify): recurrent layers keep their state
      after each token but the last, so that ``state.rollback`` can return to any of
      them; the state needs ``snapshot_slots >= k - 1``. Without it nothing is copied.
    forward_picks(tokens, start_pos, state, snapshots=False) -> int32 (k,)
      ``argmax(forward(...), axis=1)``, the greedy verify's epilogue: each row's lowest
      index of its maximum, found where the logits are (only k ints cross from a GPU).
    activations: "q8" or "f32", how every matrix multiplies (``mtpdec.cpu.matvec``).
    backends: where its parts run and what offloaded FFNs cost
      (``mtpdec.models.hybrid.Backends``); placement: the GPU plan behind them, or None.
    """

    file: GGUFFile
    config: ModelConfig
    n_vocab: int
    n_ctx_train: int
    activations: str
    backends: Backends
    placement: Any

    @property
    def tokenizer(self) -> Tokenizer: ...

    def new_state(self, n_ctx: int, snapshot_slots: int = 0) -> StateLike: ...

    def compile(self, dense: bool = True) -> float: ...

    def forward(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: Any,
        last_only: bool = False,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> np.ndarray: ...

    def forward_picks(
        self, tokens: np.ndarray, start_pos: int, state: Any, snapshots: bool = False
    ) -> np.ndarray: ...


class MtpModel(Model, Protocol):
    """A model with a multi-token-prediction head (qwen35 files that have one; ``mtp`` is
    None otherwise), as the MTP drafter uses it.

    hidden(tokens, start_pos, state, prefill=False, snapshots=False) -> float32 (k, n_embd)
      the trunk's final-normed rows; ``logits(hn)`` turns them into ``forward``'s rows,
      ``head_picks(hn)`` into each row's argmax (int32 (k,)) without bringing the rows
      back from the device.
    mtp_forward(tokens, hidden, start_pos, state, last_only=False, vocab=None)
      -> (draft logits, the head's own hidden rows) (``Qwen35Model.mtp_forward``);
    mtp_fill(tokens, hidden, start_pos, state): only the cache entries (a prompt).
    """

    mtp: Any

    def hidden(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: Any,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> np.ndarray: ...

    def logits(self, hn: np.ndarray) -> np.ndarray: ...

    def head_picks(self, hn: np.ndarray) -> np.ndarray: ...

    def mtp_forward(
        self,
        tokens: np.ndarray,
        hidden: np.ndarray,
        start_pos: int,
        state: Any,
        last_only: bool = False,
        vocab: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def mtp_fill(
        self, tokens: np.ndarray, hidden: np.ndarray, start_pos: int, state: Any
    ) -> None: ...

    def mtp_head(self, vocab: int | None = None) -> Linear: ...


MODELS: dict[str, Callable[[GGUFFile, int, str], Model]] = {}
DEFAULT_DENSE_BUDGET = 2 << 30  # bytes of fp32 matrix copies for batched prefill
# Models whose tensors total at most this run every matrix in the calling thread. After a
# parallel region the worker threads spin for a while, and on a 2-vCPU VM that slowed
# the main thread's Python between kernels: the 8 MiB built-in model decoded 240-280
# tok/s with 2 threads and 360-380 with every matrix serial (as with 1 thread). Big
# models keep the per-matrix rule (MatVec's SERIAL_MAX_BYTES): Gemma-3-270M lost 8-10%
# with a 1 MiB limit, and passive waiting (OMP_WAIT_POLICY) cost the qwen35-0.8b shape
# 20%.
SERIAL_MODEL_BYTES = 64 << 20
DEFAULT_ACTIVATIONS = "q8"


def register_model(architecture: str) -> Callable[[Any], Any]:
    """Class decorator: the class's constructor ``cls(file)`` builds models of ``architecture``."""

    def deco(cls: Any) -> Any:
        MODELS[architecture] = cls
        return cls

    return deco


def check_tokens(tokens: np.ndarray, n_vocab: int) -> np.ndarray:
    """int32 (k,) token ids, k >= 1, each in [0, n_vocab); MtpdecError otherwise."""
    t = np.asarray(tokens)
    if t.ndim != 1 or t.size == 0:
        raise MtpdecError(f"tokens must be a non-empty 1-D array, got shape {t.shape}")
    if t.dtype.kind not in "iu":
        raise MtpdecError(f"tokens must be integers, got {t.dtype}")
    if int(t.min()) < 0 or int(t.max()) >= n_vocab:
        raise MtpdecError(
            f"token ids must lie in [0, {n_vocab}), got {int(t.min())}..{int(t.max())}"
        )
    return t.astype(np.int32, copy=False)


def check_position(start_pos: int, k: int, state: StateLike) -> None:
    """``start_pos`` continues the state and the k tokens fit its context."""
    if getattr(state, "broken", False):
        raise MtpdecError("the state was left half-written by a failed forward; make a new one")
    if start_pos != state.length:
        raise MtpdecError(
            f"start_pos {start_pos} does not continue the state (length {state.length})"
        )
    if start_pos + k > state.n_ctx:
        raise MtpdecError(f"{start_pos + k} tokens exceed the context of {state.n_ctx}")


PREFILL_CHUNK = 512  # tokens per trunk pass: bounds the activations of long prompts


def run_in_chunks(
    tokens: np.ndarray,
    start_pos: int,
    state: Any,
    run: Callable[[np.ndarray, np.ndarray], Any],
    xp: Any = np,
) -> Any:
    """``run(tokens, positions) -> rows`` over chunks of at most PREFILL_CHUNK tokens, each
    inside ``state.advancing``; the rows of all chunks, concatenated by the array module
    ``xp`` they belong to (numpy, or the model's backend's)."""
    outs = []
    for at in range(0, len(tokens), PREFILL_CHUNK):
        part = tokens[at : at + PREFILL_CHUNK]
        pos = np.arange(start_pos + at, start_pos + at + len(part))
        with state.advancing(len(part)):
            outs.append(run(part, pos))
    return outs[0] if len(outs) == 1 else xp.concatenate(outs)


def embed_rows(table: Tensor, ids: np.ndarray) -> np.ndarray:
    """float32 (k, n_embd) rows ``ids`` of an embedding table Tensor (n_vocab, n_embd)."""
    raw = np.ascontiguousarray(table.raw[ids])
    return dequantize_raw(raw, table.ggml_type, (len(ids), table.cols), name=table.name)


# Embedding tables whose float32 copy is at most this big are dequantized once, on first
# use: the numpy dequantizer takes ~0.17 ms for one row, a quarter of a tiny model's MTP
# draft (the built-in model's table: 4 MiB).
DENSE_EMBEDDING_MAX_BYTES = 64 << 20


class EmbeddingRows:
    """``rows(ids)``: float32 (k, n_embd) rows of an embedding table Tensor, the same
    values as ``embed_rows`` (dequantization is exact), from a dequantized copy of the
    whole table when it is small (DENSE_EMBEDDING_MAX_BYTES), else row by row."""

    def __init__(self, table: Tensor) -> None:
        self.table = table
        self.small = 4 * table.rows * table.cols <= DENSE_EMBEDDING_MAX_BYTES
        self._dense: np.ndarray | None = None

    def rows(self, ids: np.ndarray) -> np.ndarray:
        if not self.small:
            return embed_rows(self.table, ids)
        if self._dense is None:
            self._dense = embed_rows(self.table, np.arange(self.table.rows))
        return self._dense[ids]


class ModelBase:
    """What every architecture shares: the file, tokenizer, kernels warm-up, prefill weights.

    Subclasses set ``file``, ``config``, ``n_vocab``, ``n_ctx_train`` and list their
    Linear maps in ``linears()``.
    """

    file: GGUFFile
    config: ModelConfig
    n_vocab: int
    n_ctx_train: int
    _tokenizer: Tokenizer | None = None
    placement: Any = None  # the GPU placement plan (mtpdec.gpu.placement), None on the CPU

    def _load_common(
        self, f: GGUFFile, dense_budget_bytes: int, activations: str, ops: Ops | None = None
    ) -> None:
        """File, config, sizes, numerics, embedding table, final norm and LM head
        (``output.weight``, else the tied ``token_embd``) on ``ops`` (default the CPU's);
        the head always runs through the kernels. The embedding table stays in the file
        (a lookup reads k rows on the host)."""
        from mtpdec.cpu.backend import CPU
        from mtpdec.cpu.linear import DenseBudget, Numerics
        from mtpdec.models.layers import vector

        ops = CPU if ops is None else ops
        self.file, self.config = f, f.config
        self.n_vocab = f.config.n_vocab
        key = "tokenizer.ggml.tokens"
        if key in f and f.array_len(key) != self.n_vocab:
            raise MtpdecError(
                f"{f.path}: the vocabulary has {f.array_len(key)} tokens but "
                f"token_embd.weight has {self.n_vocab} rows"
            )
        self.n_ctx_train = int(f.config.context_length)  # type: ignore[attr-defined]
        self.budget = DenseBudget(dense_budget_bytes)
        small = sum(t.nbytes for t in f.tensors.values()) <= SERIAL_MODEL_BYTES
        serial = SERIAL_MODEL_BYTES if small else Numerics.serial_max_bytes
        self.numerics = Numerics(activations, self.budget, serial)
        self.activations = activations
        self.embd = f.tensors["token_embd.weight"]
        self.embed = EmbeddingRows(self.embd)
        self.output_norm = ops.upload(vector(f, "output_norm.weight"))
        tied = "output.weight" not in f.tensors  # the embedding lookup reads its file rows
        self.head = ops.linear(
            f.tensors.get("output.weight", self.embd),
            self.numerics.kernels_only().on(ops.fixed_activations),
            keep_file_pages=tied,
        )

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            from mtpdec.tokenizer import Tokenizer

            self._tokenizer = Tokenizer.from_gguf(self.file)
        return self._tokenizer

    def linears(self) -> list[Linear]:
        raise NotImplementedError

    def _fit_dense_budget(self) -> None:
        """Dense prefill weights pay off only when every matrix has them: a budget that
        cannot hold them all is set to zero (no partial copies costing RAM for little)."""
        need = sum(lin.dense_nbytes for lin in self.linears())
        if need > self.budget.limit:
            self.budget.limit = 0

    def compile(self, dense: bool = True) -> float:
        """Compile (or load from Numba's disk cache) every kernel this model runs, by
        scratch forwards of each kernel width (1, 2, 4 and, for q8, 8 tokens), and
        (``dense``) build the dense prefill weights that fit the budget now rather than
        at the first long batch. Returns the seconds it took."""
        from mtpdec.cpu.matvec import FLOAT_WIDTHS, INT_WIDTHS

        t0 = time.perf_counter()
        widths = INT_WIDTHS if self.activations == "q8" else FLOAT_WIDTHS
        state = self.new_state(sum(widths))
        for n in widths:
            self.forward(np.zeros(n, dtype=np.int32), state.length, state)
        self._warm_extra()
        for lin in self.linears() if dense else []:
            lin.prepare_dense()
        return time.perf_counter() - t0

    def _warm_extra(self) -> None:
        """Compile kernels that the trunk forward does not run (an MTP head)."""

    def new_state(self, n_ctx: int, snapshot_slots: int = 0) -> StateLike:
        raise NotImplementedError

    def forward(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: Any,
        last_only: bool = False,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> np.ndarray:
        raise NotImplementedError

    def forward_picks(
        self, tokens: np.ndarray, start_pos: int, state: Any, snapshots: bool = False
    ) -> np.ndarray:
        """Each row's argmax of ``forward`` (the Model protocol's greedy epilogue)."""
        logits = self.forward(tokens, start_pos, state, snapshots=snapshots)
        return np.argmax(logits, axis=1).astype(np.int32)
