"""`mtpdec synth`: random-weight qwen35 GGUF files with real tensor names, shapes and types."""

from mtpdec.synth.presets import PRESETS, Qwen35Shape, SynthOverrides, resolve_shape
from mtpdec.synth.writer import SynthResult, write_synth

__all__ = [
    "PRESETS",
    "Qwen35Shape",
    "SynthOverrides",
    "SynthResult",
    "resolve_shape",
    "write_synth",
]
