#!/usr/bin/env python
"""Record llama.cpp's reference behaviour on a GGUF model as .npz fixtures.

For each prompt, llama.cpp (through llama-cpp-python, ``pip install mtpdec[ref]``)
gives the numbers mtpdec's forward pass is compared with:

- ``ids``: llama.cpp's tokenization (``add_bos`` as the model's vocabulary says,
  special tokens parsed);
- ``logits``: teacher-forced logits of every prompt position, from one batched
  ``eval`` of the whole prompt (row i predicts the token after ``ids[i]``);
- ``cont_ids``: llama.cpp's greedy continuation (argmax of the logits, then ``eval`` of
  that one token, repeated). It stops after ``n_continue`` tokens, or right after an
  end-of-generation token (which is kept as the last entry); ``cont_stop`` says which.
- ``cont_top_ids`` / ``cont_top_logits``: the top-k (descending) of the logits that
  chose each continuation token: row j belongs to the decision of ``cont_ids[j]``, so
  row 0 comes from ``logits[-1]`` and row j >= 1 from the one-token ``eval`` of
  ``cont_ids[j - 1]``. ``cont_logits`` holds these rows in full when asked for.

A fixture file holds one prompt (``save_reference`` / ``load_reference``); a directory
holds one file per prompt, ``NN-name.npz`` in recording order (``write_references`` /
``load_references``). Each file also carries metadata as a JSON string: the prompt's
name and text, llama_cpp's version, the model file's name and size, n_vocab, add_bos,
n_ctx, n_batch, n_threads and n_continue.

``PROMPTS`` is the default prompt set (prose, code, emoji/symbols, CJK, arithmetic, a
list with tabs and runs of spaces, a Gemma chat turn, multilingual text). It is written for
Gemma-3; any vocabulary tokenizes it (a synthetic qwen35 BPE vocab falls back to bytes).

Examples:
    # Gemma-3-270M, the default prompts, one fixture file per prompt
    python scripts/llama_reference.py --model gemma-3-270m-q4_k_m.gguf --out ref/gemma

    # write the tiny synthetic qwen35 preset first (H_k < H_v), one prompt, printed only
    python scripts/llama_reference.py --preset qwen35-tiny --ssm-groups 2 --ssm-heads 4 \\
        --prompt "The quick brown fox" --show 5 --check-mtp

    # explicit token ids instead of text, saved to one file
    python scripts/llama_reference.py --model tiny.gguf --tokens 1,2,3,4 --out ref.npz

llama.cpp's numbers are bitwise the same for 1 and 2 threads; on a shared 2-core machine
``--threads 1`` runs steadier (two threads spin at barriers when a core is taken). They
are not exact: llama.cpp rounds activations to 8 bits before each quantized matmul
(tests/test_parity.py gives the size of that error).

Exit status: 0 on success; 1 when a logit is not finite; 2 for bad input (a model
llama.cpp cannot run, too long a prompt).

Importable: the tests load this file with importlib (registering the module in
``sys.modules`` before executing it, as dataclasses need) and call ``record``,
``write_references`` and ``load_references``; nothing runs on import and llama_cpp is
imported only when a function needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# name -> text. Names are file-name safe; order is the recording order. Eight prompts
# of 18-46 Gemma tokens keep a full recording (32 greedy tokens each) near 10 s.
PROMPTS: dict[str, str] = {
    "prose": (
        "The old lighthouse keeper climbed the spiral stairs every evening, counting "
        "each step while the storm gathered over the bay."
    ),
    "code": (
        "def fibonacci(n: int) -> int:\n"
        '    """Return the n-th Fibonacci number."""\n'
        "    a, b = 0, 1\n"
        "    for _ in range(n):\n"
    ),
    "unicode": "Emoji and symbols: 🚀✨🎉 → ∑ ∞ ≈ ≠; café, naïve, façade — “quoted” text…",
    "cjk": "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "math": "Compute 37 * 43 = 1591, then 1591 + 2024 = 3615. Next, 3615 / 5 =",
    "list": "Shopping list:\n1. eggs\t(12)\n2. flour   500 g\n3. butter\n4.",
    "dialogue": (
        "<start_of_turn>user\nWhat is the capital of France? Answer in one word."
        "<end_of_turn>\n<start_of_turn>model\n"
    ),
    "multilingual": (
        "Bonjour, comment ça va ? Hallo, wie geht's? ¿Dónde está la biblioteca? Привет, как дела?"
    ),
}

DEFAULT_CONTINUE = 32
DEFAULT_TOP_K = 16
DEFAULT_THREADS = 2
CTX_ALIGN = 32


@dataclass
class Reference:
    """llama.cpp's record of one prompt (see the module docstring for each field).

    ids: int32 (n,); logits: float32 (n, n_vocab); cont_ids: int32 (m,), m <= n_continue;
    cont_top_ids: int32 (m, k); cont_top_logits: float32 (m, k); cont_logits: float32
    (m, n_vocab) or None; meta: JSON-compatible dict.
    """

    name: str
    prompt: str | None
    ids: np.ndarray
    logits: np.ndarray
    cont_ids: np.ndarray
    cont_stop: str  # "eog" or "length"
    cont_top_ids: np.ndarray
    cont_top_logits: np.ndarray
    cont_logits: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def cont_margins(self) -> np.ndarray:
        """float32 (m,): top-1 minus top-2 logit of each continuation decision."""
        return self.cont_top_logits[:, 0] - self.cont_top_logits[:, 1]


# ---------------------------------------------------------------- llama.cpp


def _llama_cpp() -> Any:
    import llama_cpp

    return llama_cpp


def is_runnable(path: Path) -> str | None:
    """None when llama.cpp can run the file, else why not (checked without llama.cpp).

    llama.cpp aborts the whole process (GGML_ASSERT) on a qwen35 file whose trunk has
    no full-attention layer, so such a file must never reach it.
    """
    from mtpdec import MtpdecError, open_gguf
    from mtpdec.loader.config import ATTENTION, GDN

    try:
        with open_gguf(path) as f:
            kinds = f.config.layer_kinds
    except MtpdecError:
        return None  # an architecture mtpdec does not know: no GDN layers to check
    if GDN in kinds and ATTENTION not in kinds:
        return f"{path}: no full-attention layer in the trunk; llama.cpp cannot run it"
    return None


def open_llama(path: Path, n_ctx: int, *, n_threads: int = DEFAULT_THREADS, verbose: bool = False):
    """llama_cpp.Llama over ``path`` with logits for every position, one batch = n_ctx."""
    llama_cpp = _llama_cpp()
    return llama_cpp.Llama(
        model_path=str(path),
        logits_all=True,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        verbose=verbose,
    )


def add_bos_default(llm) -> bool:
    """The vocabulary's own add_bos flag (what llama.cpp's tokenizer applies)."""
    llama_cpp = _llama_cpp()
    return bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))


def is_eog(llm, token: int) -> bool:
    """llama.cpp's end-of-generation test for ``token``."""
    llama_cpp = _llama_cpp()
    return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))


def tokenize(llm, text: str) -> list[int]:
    """llama.cpp's ids: BOS as the model's vocabulary says (add_special), specials parsed."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))


def _top_k(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest entries of ``row``, descending (ties: lower id first)."""
    k = min(k, row.size)
    part = np.argpartition(-row, k - 1)[:k]
    order = np.lexsort((part, -row[part]))
    ids = part[order].astype(np.int32)
    return ids, row[ids].astype(np.float32)


def record_ids(
    llm,
    name: str,
    ids: list[int],
    *,
    prompt: str | None = None,
    n_continue: int = DEFAULT_CONTINUE,
    top_k: int = DEFAULT_TOP_K,
    full_cont: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> Reference:
    """Teacher-forced logits of ``ids`` and the greedy continuation from them.

    ``llm`` must come from ``open_llama`` with n_ctx >= len(ids) + n_continue. The context
    is reset first, so calls are independent (checked for attention and recurrent models:
    a reused context gives bitwise the logits of a fresh one).
    """
    n = len(ids)
    if n == 0:
        raise ValueError(f"prompt {name!r} has no tokens")
    if n + n_continue > llm.n_ctx():
        raise ValueError(
            f"prompt {name!r}: {n} tokens + {n_continue} continued exceed n_ctx {llm.n_ctx()}"
        )
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[:n], dtype=np.float32)

    cont: list[int] = []
    tops_i: list[np.ndarray] = []
    tops_v: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    row = logits[-1]
    stop = "length"
    while len(cont) < n_continue:
        tok = int(np.argmax(row))
        cont.append(tok)
        ti, tv = _top_k(row, top_k)
        tops_i.append(ti)
        tops_v.append(tv)
        if full_cont:
            rows.append(np.array(row, dtype=np.float32))
        if is_eog(llm, tok):
            stop = "eog"
            break
        if len(cont) == n_continue:
            break
        llm.eval([tok])
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)

    k = min(top_k, logits.shape[1])
    return Reference(
        name=name,
        prompt=prompt,
        ids=np.asarray(ids, dtype=np.int32),
        logits=logits,
        cont_ids=np.asarray(cont, dtype=np.int32),
        cont_stop=stop,
        cont_top_ids=np.array(tops_i, dtype=np.int32).reshape(len(cont), k),
        cont_top_logits=np.array(tops_v, dtype=np.float32).reshape(len(cont), k),
        cont_logits=np.stack(rows) if full_cont and rows else None,
        meta=dict(meta or {}),
    )


def _ctx_bound(texts: Iterable[str], n_continue: int) -> int:
    """An n_ctx that fits every prompt: a token covers at least one byte, plus BOS/EOS."""
    longest = max(len(t.encode("utf-8")) for t in texts)
    need = longest + 2 + n_continue
    return -(-need // CTX_ALIGN) * CTX_ALIGN


def model_meta(path: Path, llm, n_continue: int, n_threads: int) -> dict[str, Any]:
    """What a fixture records about the run (besides the prompt)."""
    llama_cpp = _llama_cpp()
    return {
        "llama_cpp_version": llama_cpp.__version__,
        "model_file": Path(path).name,
        "model_size": Path(path).stat().st_size,
        "n_vocab": int(llm.n_vocab()),
        "add_bos": add_bos_default(llm),
        "n_ctx": int(llm.n_ctx()),
        "n_batch": int(llm.n_batch),
        "n_threads": n_threads,
        "n_continue": n_continue,
    }


def record(
    path: Path,
    prompts: Mapping[str, str] | None = None,
    *,
    token_prompts: Mapping[str, list[int]] | None = None,
    n_continue: int = DEFAULT_CONTINUE,
    top_k: int = DEFAULT_TOP_K,
    full_cont: bool = False,
    n_threads: int = DEFAULT_THREADS,
    verbose: bool = False,
) -> list[Reference]:
    """llama.cpp's References for every prompt (text ones first, then explicit ids).

    prompts: name -> text (default ``PROMPTS`` when neither argument is given);
    token_prompts: name -> token ids, recorded as given (``prompt`` None).
    Raises ValueError when llama.cpp cannot run the file (see ``is_runnable``).
    One llama.cpp context serves all prompts; it is closed before returning.
    """
    path = Path(path)
    if prompts is None and token_prompts is None:
        prompts = PROMPTS
    prompts = dict(prompts or {})
    token_prompts = dict(token_prompts or {})
    why = is_runnable(path)
    if why:
        raise ValueError(why)
    bound = _ctx_bound(list(prompts.values()) or [""], n_continue)
    if token_prompts:
        longest = max(len(t) for t in token_prompts.values()) + n_continue
        bound = max(bound, -(-longest // CTX_ALIGN) * CTX_ALIGN)
    llm = open_llama(path, bound, n_threads=n_threads, verbose=verbose)
    try:
        base = model_meta(path, llm, n_continue, n_threads)
        todo = [(name, text, tokenize(llm, text)) for name, text in prompts.items()]
        todo += [(name, None, list(ids)) for name, ids in token_prompts.items()]
        refs = []
        for name, text, ids in todo:
            meta = {**base, "name": name, "prompt": text}
            refs.append(
                record_ids(
                    llm,
                    name,
                    ids,
                    prompt=text,
                    n_continue=n_continue,
                    top_k=top_k,
                    full_cont=full_cont,
                    meta=meta,
                )
            )
        return refs
    finally:
        llm.close()


def count_mtp_layers(path: Path, verbose: bool = False) -> int:
    """Load the model with ``load_mtp`` (llama.cpp then creates and checks the NextN
    tensors) and return its NextN layer count; ValueError when loading fails."""
    llama_cpp = _llama_cpp()
    from llama_cpp._utils import suppress_stdout_stderr

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.load_mtp = True
    with suppress_stdout_stderr(disable=verbose):
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ValueError(f"llama.cpp could not load {path} with its MTP block")
    try:
        return int(llama_cpp.llama_model_n_layer_nextn(model))
    finally:
        llama_cpp.llama_model_free(model)


# ---------------------------------------------------------------- files


def save_reference(ref: Reference, path: Path) -> None:
    """Write one Reference to an .npz file (uncompressed; metadata as a JSON string)."""
    arrays = {
        "ids": ref.ids,
        "logits": ref.logits,
        "cont_ids": ref.cont_ids,
        "cont_top_ids": ref.cont_top_ids,
        "cont_top_logits": ref.cont_top_logits,
    }
    if ref.cont_logits is not None:
        arrays["cont_logits"] = ref.cont_logits
    meta = {**ref.meta, "name": ref.name, "prompt": ref.prompt, "cont_stop": ref.cont_stop}
    np.savez(path, meta=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)


def load_reference(path: Path) -> Reference:
    """Read a file written by ``save_reference`` (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return Reference(
            name=meta["name"],
            prompt=meta["prompt"],
            ids=z["ids"],
            logits=z["logits"],
            cont_ids=z["cont_ids"],
            cont_stop=meta["cont_stop"],
            cont_top_ids=z["cont_top_ids"],
            cont_top_logits=z["cont_top_logits"],
            cont_logits=z["cont_logits"] if "cont_logits" in z.files else None,
            meta=meta,
        )


def write_references(refs: Iterable[Reference], out_dir: Path) -> list[Path]:
    """One ``NN-name.npz`` per Reference in ``out_dir`` (created); the paths, in order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ref in enumerate(refs):
        p = out_dir / f"{i:02d}-{ref.name}.npz"
        save_reference(ref, p)
        paths.append(p)
    return paths


def load_references(out_dir: Path) -> list[Reference]:
    """Every fixture of a directory written by ``write_references``, in order."""
    return [load_reference(p) for p in sorted(Path(out_dir).glob("[0-9][0-9]-*.npz"))]


# ---------------------------------------------------------------- synthetic models


def synth_model(
    out: Path,
    preset: str = "qwen35-tiny",
    *,
    seed: int = 0,
    quiet: bool = True,
    **overrides: Any,
) -> Path:
    """Write a ``mtpdec synth`` file (overrides as mtpdec.synth.SynthOverrides fields)."""
    from mtpdec.synth import SynthOverrides, write_synth

    report = (lambda _line: None) if quiet else None
    write_synth(
        Path(out),
        preset,
        seed=seed,
        overrides=SynthOverrides(**overrides),
        force=True,
        report=report,
    )
    return Path(out)


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="an existing GGUF file")
    src.add_argument("--preset", help="write this mtpdec synth preset first (qwen35-tiny, ...)")
    p.add_argument("--synth-out", type=Path, help="where --preset writes (default: a temp file)")
    p.add_argument("--seed", type=int, default=0, help="synth seed (default 0)")
    for opt in ("layers", "n-embd", "n-head", "n-head-kv", "ssm-groups", "ssm-heads", "vocab"):
        p.add_argument(f"--{opt}", type=int, help=f"synth: --{opt} of mtpdec synth")
    p.add_argument("--no-mtp", action="store_true", help="synth: leave out the MTP block")
    inp = p.add_mutually_exclusive_group()
    inp.add_argument(
        "--prompt", action="append", help="a prompt text (repeatable; default: PROMPTS)"
    )
    inp.add_argument("--prompts-file", type=Path, help='a JSON object {"name": "text", ...}')
    inp.add_argument("--tokens", help="comma-separated token ids instead of text")
    p.add_argument("--n-continue", type=int, default=DEFAULT_CONTINUE, help="greedy tokens")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="top-k kept per decision")
    p.add_argument("--cont-logits", action="store_true", help="keep full continuation logits")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="llama.cpp threads")
    p.add_argument("--out", type=Path, help="a directory, or an .npz file for one prompt")
    p.add_argument("--show", type=int, default=0, metavar="N", help="print top-N per position")
    p.add_argument("--check-mtp", action="store_true", help="also load with load_mtp")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    return p.parse_args(argv)


def _prompts_from(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, list[int]]]:
    if args.tokens:
        return {}, {"tokens": [int(x) for x in args.tokens.split(",") if x.strip()]}
    if args.prompts_file:
        data = json.loads(args.prompts_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"{args.prompts_file}: expected a JSON object of name -> text")
        return data, {}
    if args.prompt:
        return {f"p{i}": t for i, t in enumerate(args.prompt)}, {}
    return dict(PROMPTS), {}


def _print_reference(ref: Reference, detok, top: int) -> None:
    def piece(t: int) -> str:
        return repr(detok([int(t)]).decode("utf-8", errors="replace"))

    print(f"--- {ref.name}: {len(ref.ids)} tokens {ref.ids.tolist()}")
    if top:
        print(f"{'pos':>4} {'token':>7} {'piece':<14} {'std':>7}  top-{top} (id: logit)")
        for i, tok in enumerate(ref.ids):
            row = ref.logits[i]
            ids, vals = _top_k(row, top)
            tops = "  ".join(f"{j}: {v:.3f}" for j, v in zip(ids, vals, strict=True))
            print(f"{i:>4} {int(tok):>7} {piece(tok):<14} {row.std():>7.3f}  {tops}")
    text = detok(ref.cont_ids.tolist()).decode("utf-8", errors="replace")
    margins = ref.cont_margins
    print(
        f"greedy ({len(ref.cont_ids)}, stop {ref.cont_stop}, min top1-top2 margin "
        f"{margins.min():.4f} at step {int(margins.argmin())}): {text!r}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        prompts, token_prompts = _prompts_from(args)
    except (ValueError, OSError) as e:
        print(f"llama_reference: {e}", file=sys.stderr)
        return 2
    if args.out and args.out.suffix == ".npz" and len(prompts) + len(token_prompts) != 1:
        print(f"llama_reference: --out {args.out}: an .npz file holds one prompt", file=sys.stderr)
        return 2
    overrides = {
        k: getattr(args, k)
        for k in ("layers", "n_embd", "n_head", "n_head_kv", "ssm_groups", "ssm_heads", "vocab")
    }
    with tempfile.TemporaryDirectory(prefix="llama-ref-") as tmp:
        if args.model:
            path = args.model
        else:
            path = args.synth_out or Path(tmp) / f"{args.preset}.gguf"
            synth_model(path, args.preset, seed=args.seed, mtp=not args.no_mtp, **overrides)
        try:
            refs = record(
                path,
                prompts,
                token_prompts=token_prompts,
                n_continue=args.n_continue,
                top_k=args.top_k,
                full_cont=args.cont_logits,
                n_threads=args.threads,
                verbose=args.verbose,
            )
        except ValueError as e:
            print(f"llama_reference: {e}", file=sys.stderr)
            return 2
        if args.check_mtp:
            print(f"mtp: {count_mtp_layers(path, args.verbose)} NextN block(s) loaded")
        meta = refs[0].meta
        print(
            f"model {meta['model_file']} ({meta['model_size']} bytes, n_vocab "
            f"{meta['n_vocab']}, add_bos {meta['add_bos']}), llama_cpp {meta['llama_cpp_version']}"
        )
        llm = _llama_cpp().Llama(model_path=str(path), vocab_only=True, verbose=args.verbose)
        try:
            for ref in refs:
                _print_reference(ref, llm.detokenize, args.show)
        finally:
            llm.close()

    if args.out:
        if args.out.suffix == ".npz":
            save_reference(refs[0], args.out)
            print(f"saved {args.out}")
        else:
            paths = write_references(refs, args.out)
            print(f"saved {len(paths)} files in {args.out}")
    finite = all(np.isfinite(r.logits).all() and np.isfinite(r.cont_top_logits).all() for r in refs)
    if not finite:
        print("a logit is not finite", file=sys.stderr)
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
