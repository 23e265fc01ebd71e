"""The built-in model (issue 10): shipped in the package, used by `generate` and `sweep`
without a MODEL, and its MTP head drafts what the trunk then accepts on held-out code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mtpdec.builtin import BUILTIN_NAME, builtin_file, split_generate_args
from mtpdec.cli import app

runner = CliRunner()


def test_the_files_ship_and_the_card_describes_the_model() -> None:
    from mtpdec.models import load_model
    from mtpdec.sweep import read_prompts

    path = builtin_file()
    assert path.stat().st_size <= 16 << 20
    model = load_model(path)
    assert model.config.architecture == "qwen35" and model.mtp is not None
    card = json.loads(builtin_file(".card.json").read_text())
    assert card["shape"]["n_vocab"] == model.n_vocab
    assert card["file_bytes"] == path.stat().st_size
    for figures in card["held_out"].values():
        assert {"trunk_loss", "mtp_loss", "first_draft_acceptance"} <= set(figures)
    assert len(read_prompts(builtin_file(".prompts.txt"))) == 5


def test_a_lone_positional_is_the_prompt_for_the_built_in_model(tmp_path: Path) -> None:
    builtin = builtin_file()
    assert split_generate_args("def f(x):", None, None) == (builtin, "def f(x):")
    assert split_generate_args(BUILTIN_NAME, "x = 1", None) == (builtin, "x = 1")
    assert split_generate_args(None, None, None) == (builtin, None)
    other = tmp_path / "model.bin"
    other.write_bytes(b"")
    assert split_generate_args(str(other), None, None) == (other, None)  # an existing file
    assert split_generate_args("missing.gguf", None, None) == (Path("missing.gguf"), None)
    prompt_file = tmp_path / "p.txt"
    assert split_generate_args("def f(x):", None, prompt_file) == (Path("def f(x):"), None)


def test_generate_and_sweep_run_it_without_a_model_argument(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "def add(a, b):\n", "-n", "12", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == str(builtin_file()) and out["draft"]["drafter"] == "mtp"
    js = tmp_path / "sweep.json"
    args = ["sweep", "--draft-n", "0,1", "-n", "8", "--repeats", "1", "--json", str(js)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [r["draft_n"] for r in json.loads(js.read_text())["records"]] == ["0", "1"]


@pytest.mark.parametrize("activations", ["q8", "f32"])
def test_mtp_drafts_are_accepted_on_held_out_code(activations: str) -> None:
    """Issue 10's bar: the first draft accepted at least half the time on the held-out
    prompts (n = 1, 32 tokens each), the output bitwise plain greedy decoding."""
    from mtpdec.decode import decode_plain
    from mtpdec.draft import make_drafter
    from mtpdec.draft.adaptive import FixedN
    from mtpdec.models import load_model
    from mtpdec.sampling import Sampler
    from mtpdec.speculative import decode_speculative
    from mtpdec.sweep import read_prompts

    model = load_model(builtin_file(), activations=activations)
    drafted = accepted = 0
    for text in read_prompts(builtin_file(".prompts.txt")):
        ids = np.asarray(model.tokenizer.encode(text), dtype=np.int32)

        state = model.new_state(len(ids) + 40, snapshot_slots=1)
        drafter = make_drafter("mtp", model, state, None, None, 1.0, 0)
        steps = list(decode_speculative(model, ids, 32, Sampler(), state, drafter, FixedN(1),
                                        stop_at_eog=False))  # fmt: skip
        plain = decode_plain(model, ids, 32, Sampler(), model.new_state(len(ids) + 40),
                             stop_at_eog=False)  # fmt: skip
        assert [t for s in steps for t in s.tokens] == [t for s in plain for t in s.tokens]
        drafted += sum(s.drafted for s in steps)
        accepted += sum(s.accepted for s in steps)
    assert drafted > 0
    assert accepted / drafted >= 0.5, f"first-draft acceptance {accepted / drafted:.1%}"


def test_small_models_run_every_matrix_serially(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose tensors total at most SERIAL_MODEL_BYTES keeps its worker threads
    idle (every matrix in the calling thread); above it, matrices bigger than MatVec's
    SERIAL_MAX_BYTES run on the workers. The built-in model has 860 KiB heads and
    442 KiB fused attention inputs, so the two rules differ on it."""
    import mtpdec.models.base as base
    from mtpdec.cpu.matvec import SERIAL_MAX_BYTES
    from mtpdec.models import load_model

    small = load_model(builtin_file())
    assert not any(lin.kernel.parallel for lin in small.linears() + [small.head])
    monkeypatch.setattr(base, "SERIAL_MODEL_BYTES", 1 << 20)
    big = load_model(builtin_file())
    parallel = [lin for lin in big.linears() + [big.head] if lin.kernel.parallel]
    assert parallel and all(lin.w.nbytes > SERIAL_MAX_BYTES for lin in parallel)
