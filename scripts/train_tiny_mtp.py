"""Train mtpdec's tiny qwen35 model with its MTP head on the Python standard library.

    pip install -e '.[train]'
    python scripts/train_tiny_mtp.py --out train_out --steps 500

Writes train_out/{vocab.json, tokens.npz, loss.tsv, checkpoint.pt, model.gguf, card.json,
prompts.txt} (``mtpdec.train.run``). Run it again with the same options to continue a
stopped run from its last checkpoint; a finished run only re-evaluates and rewrites the
file. ``--install`` then copies the model, its card and the held-out prompts into the
package as the built-in model (``mtpdec.builtin``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from mtpdec.train.run import TrainOptions, train


def main(argv: list[str] | None = None) -> None:
    defaults = TrainOptions(out=Path("train_out"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=defaults.out)
    for name in ("steps", "batch", "seq", "warmup", "seed", "chunk", "eval_windows", "log_every",
                 "save_every"):  # fmt: skip
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--vocab", dest="n_vocab", type=int, default=defaults.n_vocab)
    p.add_argument("--max-files", type=int, default=None, help="a corpus subset (quick runs)")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--mtp-weight", type=float, default=defaults.mtp_weight)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: its own)")
    p.add_argument("--install", action="store_true", help="copy the result into mtpdec/data")
    args = vars(p.parse_args(argv))
    threads, install = args.pop("threads"), args.pop("install")
    if threads is not None:
        torch.set_num_threads(threads)
    opts = TrainOptions(**args)
    card = train(opts)
    print(json.dumps(card["held_out"], indent=2))
    if install:
        from mtpdec.builtin import BUILTIN_NAME, DATA_DIR

        DATA_DIR.mkdir(exist_ok=True)
        for name, suffix in (("model.gguf", ".gguf"), ("card.json", ".card.json"),
                             ("prompts.txt", ".prompts.txt")):  # fmt: skip
            shutil.copyfile(opts.out / name, DATA_DIR / f"{BUILTIN_NAME}{suffix}")
        print(f"installed as {DATA_DIR / BUILTIN_NAME}.*")


if __name__ == "__main__":
    main()
