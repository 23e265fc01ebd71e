"""mtpdec's built-in model: a tiny qwen35 model with a trained MTP head, shipped in the
package (``mtpdec/data``), so that ``mtpdec generate`` and ``mtpdec sweep`` run with
real MTP acceptance and no download.

Files (written by ``scripts/train_tiny_mtp.py --install``):
- ``tiny-mtp.gguf``: the model, Q4_K_M-style;
- ``tiny-mtp.card.json``: its model card (data, shape, losses, acceptance);
- ``tiny-mtp.prompts.txt``: held-out code prompts (``mtpdec.train.prompts``), the
  default prompts of ``mtpdec sweep`` on this model.

A MODEL argument may name it as ``tiny-mtp``; ``generate`` and ``sweep`` use it when no
MODEL is given.
"""

from __future__ import annotations

from pathlib import Path

from mtpdec.errors import MtpdecError

BUILTIN_NAME = "tiny-mtp"
DATA_DIR = Path(__file__).resolve().parent / "data"


def builtin_file(suffix: str = ".gguf") -> Path:
    """The built-in model's file with this suffix (``.gguf``, ``.card.json``,
    ``.prompts.txt``); a one-line error when the installation lacks it."""
    path = DATA_DIR / f"{BUILTIN_NAME}{suffix}"
    if not path.is_file():
        raise MtpdecError(f"the built-in model's file {path} is missing from this installation")
    return path


def is_builtin(model: str | Path | None) -> bool:
    return model is None or str(model) == BUILTIN_NAME


def resolve_model(model: str | Path | None) -> Path:
    """A MODEL argument as a path: None or ``tiny-mtp`` is the built-in model."""
    return builtin_file() if is_builtin(model) else Path(model)


def looks_like_model(arg: str) -> bool:
    """Whether a first positional argument of ``generate`` names a model rather than
    being the prompt: the built-in name, an existing file, or a name ending in .gguf."""
    return arg == BUILTIN_NAME or arg.lower().endswith(".gguf") or Path(arg).is_file()


def split_generate_args(
    model: str | None, prompt: str | None, prompt_file: Path | None
) -> tuple[Path, str | None]:
    """``generate [MODEL] [PROMPT]`` -> (model path, prompt): one positional that does not
    look like a model (and no --prompt-file) is the prompt for the built-in model."""
    if model is not None and prompt is None and prompt_file is None and not looks_like_model(model):
        return builtin_file(), model
    return resolve_model(model), prompt
