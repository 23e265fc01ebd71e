"""Train mtpdec's tiny qwen35 model with its MTP head on the Python standard library.

    pip install -e '.[train]'
    python scripts/train_tiny_mtp.py --out train_out --steps 500

Writes train_out/{vocab.json, tokens.npz, loss.tsv, checkpoint.pt, model.gguf, card.json}
(``mtpdec.train.run``). Run it again with the same options to continue a stopped run from
its last checkpoint; a finished run only re-evaluates and rewrites the file.
"""

from __future__ import annotations

import argparse
import json
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
    args = vars(p.parse_args(argv))
    threads = args.pop("threads")
    if threads is not None:
        torch.set_num_threads(threads)
    card = train(TrainOptions(**args))
    print(json.dumps(card["held_out"], indent=2))


if __name__ == "__main__":
    main()
