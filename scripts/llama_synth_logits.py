#!/usr/bin/env python
"""Run a synthetic (or any) qwen35 GGUF in llama.cpp and print / save its logits.

Shows that a file written by `mtpdec synth` loads and runs in llama.cpp (through
llama-cpp-python, `pip install mtpdec[ref]`), and produces reference logits to compare
mtpdec's own forward pass with.

Examples:
    # write the tiny preset to a temporary file, run a sentence through it
    python scripts/llama_synth_logits.py --preset qwen35-tiny --text "Hello world"

    # an existing file, explicit token ids, logits saved for later comparison
    python scripts/llama_synth_logits.py --model tiny.gguf --tokens 1,2,3,4 --save ref.npz

    # H_k < H_v, as in the 27B model
    python scripts/llama_synth_logits.py --preset qwen35-tiny --ssm-groups 2 --ssm-heads 4

The .npz file holds `tokens` (int32, n) and `logits` (float32, n x vocab): row i is
llama.cpp's logits after tokens[0..i]. Exit status 1 when a logit is not finite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="an existing GGUF file")
    src.add_argument("--preset", help="write this mtpdec synth preset first (qwen35-tiny, ...)")
    p.add_argument("--out", type=Path, help="where --preset writes (default: a temporary file)")
    p.add_argument("--seed", type=int, default=0, help="synth seed (default 0)")
    p.add_argument("--layers", type=int, help="synth: trunk layers")
    p.add_argument("--n-embd", type=int, help="synth: model width")
    p.add_argument("--ssm-groups", type=int, help="synth: GDN key heads H_k")
    p.add_argument("--ssm-heads", type=int, help="synth: GDN value heads H_v")
    p.add_argument("--vocab", type=int, help="synth: vocabulary size")
    p.add_argument("--no-mtp", action="store_true", help="synth: leave out the MTP block")
    inp = p.add_mutually_exclusive_group()
    inp.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    inp.add_argument("--tokens", help="comma-separated token ids instead of --text")
    p.add_argument("--n-ctx", type=int, default=256, help="llama.cpp context size")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    p.add_argument("--top", type=int, default=5, help="top-k logits printed per position")
    p.add_argument("--save", type=Path, help="write tokens and logits to this .npz file")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    return p.parse_args(argv)


def synth_file(args: argparse.Namespace, tmp: Path) -> Path:
    from mtpdec.synth import SynthOverrides, write_synth

    out = args.out or tmp / f"{args.preset}.gguf"
    overrides = SynthOverrides(
        layers=args.layers,
        n_embd=args.n_embd,
        ssm_groups=args.ssm_groups,
        ssm_heads=args.ssm_heads,
        vocab=args.vocab,
        mtp=not args.no_mtp,
    )
    write_synth(out, args.preset, seed=args.seed, overrides=overrides, force=True)
    return out


def check_mtp_block(path: Path, verbose: bool) -> int:
    """Load the file with load_mtp (so llama.cpp creates and checks the NextN tensors)."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.load_mtp = True
    with suppress_stdout_stderr(disable=verbose):
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise SystemExit(f"llama.cpp could not load {path} with its MTP block")
    n = llama_cpp.llama_model_n_layer_nextn(model)
    llama_cpp.llama_model_free(model)
    return n


def has_attention_layer(path: Path) -> bool:
    """llama.cpp aborts (GGML_ASSERT) on a qwen35 file whose trunk is all GDN layers."""
    from mtpdec import open_gguf
    from mtpdec.loader.config import ATTENTION

    with open_gguf(path) as f:
        return ATTENTION in f.config.layer_kinds


def run(path: Path, args: argparse.Namespace) -> int:
    import llama_cpp

    if not has_attention_layer(path):
        print(
            f"{path}: no full-attention layer in the trunk; llama.cpp cannot run it",
            file=sys.stderr,
        )
        return 2
    n_nextn = check_mtp_block(path, args.verbose)

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(path),
        logits_all=True,
        n_ctx=args.n_ctx,
        n_batch=args.n_ctx,
        n_threads=args.threads,
        verbose=args.verbose,
    )
    t_load = time.perf_counter() - t0
    if args.tokens:
        tokens = [int(x) for x in args.tokens.split(",") if x.strip()]
    else:
        tokens = llm.tokenize(args.text.encode(), add_bos=False, special=False)
    if not tokens or len(tokens) > args.n_ctx:
        print(f"need 1..{args.n_ctx} tokens, got {len(tokens)}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    llm.eval(tokens)
    t_eval = time.perf_counter() - t0
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)

    print(f"model   {path} (n_vocab {llm.n_vocab()}, load {t_load:.2f} s)")
    print(f"mtp     {n_nextn} NextN block(s) loaded with load_mtp")
    print(f"tokens  {len(tokens)}: {tokens}  (eval {t_eval * 1e3:.1f} ms)")
    print(f"{'pos':>4} {'token':>7} {'piece':<14} {'std':>7}  top-{args.top} (id: logit)")
    for i, tok in enumerate(tokens):
        row = logits[i]
        top = np.argsort(row)[::-1][: args.top]
        piece = llm.detokenize([tok]).decode("utf-8", errors="replace")
        tops = "  ".join(f"{j}: {row[j]:.3f}" for j in top)
        print(f"{i:>4} {tok:>7} {piece!r:<14} {row.std():>7.3f}  {tops}")
    finite = bool(np.isfinite(logits).all())
    spread = float(np.abs(logits - logits[:1]).max()) if len(tokens) > 1 else 0.0
    print(f"finite {finite}; max |logits[i] - logits[0]| = {spread:.3f}")
    if args.save:
        np.savez(args.save, tokens=np.array(tokens, dtype=np.int32), logits=logits)
        print(f"saved   {args.save}")
    llm.close()
    return 0 if finite else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        path = args.model if args.model else synth_file(args, Path(tmp))
        return run(path, args)


if __name__ == "__main__":
    sys.exit(main())
