"""The CUDA sources in ``kernels/`` and the kernel instances mtpdec builds from them.

Nothing here needs CuPy or a GPU: the tests compile the same instances with ``nvcc``
(``instantiation_source``), and ``mtpdec.gpu.runtime`` hands the names to CuPy's
``RawModule(name_expressions=...)``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from mtpdec.errors import MtpdecError
from mtpdec.quants.types import GGMLType


def _kernel_dir() -> Path:
    """kernels/ beside mtpdec/ in a source tree (or editable install), else where a wheel
    puts them (pyproject's data-files)."""
    beside = Path(__file__).resolve().parents[2] / "kernels"
    return beside if beside.is_dir() else Path(sys.prefix) / "share" / "mtpdec" / "kernels"


KERNEL_DIR = _kernel_dir()
NVCC_OPTIONS = ("--std=c++17", "--fmad=false")  # contractions only where a kernel asks
MAX_INPUTS = 8  # matvec inputs per weight read

# weight format -> its block decoder struct in kernels/quant_blocks.cuh
BLOCK_STRUCTS = {
    GGMLType.F32: "mtpdec::F32Block",
    GGMLType.F16: "mtpdec::F16Block",
    GGMLType.Q8_0: "mtpdec::Q8_0Block",
    GGMLType.Q5_0: "mtpdec::Q5_0Block",
    GGMLType.Q4_K: "mtpdec::Q4_KBlock",
    GGMLType.Q5_K: "mtpdec::Q5_KBlock",
    GGMLType.Q6_K: "mtpdec::Q6_KBlock",
}


def nvrtc_options(arch: str) -> list[str]:
    """NVRTC options of every kernel build: ours (no contraction, subnormals kept, the
    kernels/ include path) and the target, e.g. "sm_90" (a CUBIN)."""
    return [*NVCC_OPTIONS, "-ftz=false", f"-I{KERNEL_DIR}", f"-arch={arch}"]


def sources_digest() -> str:
    """Hash of every kernels/ file: passed as a -D option so that CuPy's disk cache, keyed
    by the .cu text and the options only, never serves a binary built from older
    headers."""
    digest = hashlib.sha256()
    for path in sorted(KERNEL_DIR.glob("*.cu*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def kernel_path(name: str) -> Path:
    """A file of kernels/; MtpdecError naming it when it is missing."""
    path = KERNEL_DIR / name
    if not path.is_file():
        raise MtpdecError(f"CUDA source {path} not found")
    return path


def matvec_name(t: GGMLType, n: int) -> str:
    """The templated kernel for weight type t and n inputs (kernels/matvec.cu)."""
    if t not in BLOCK_STRUCTS:
        raise MtpdecError(f"no GPU matvec for weight type {GGMLType(t).name}")
    if not 1 <= n <= MAX_INPUTS:
        raise MtpdecError(f"GPU matvec takes 1..{MAX_INPUTS} inputs, got {n}")
    return f"mtpdec::matvec<{BLOCK_STRUCTS[t]}, {n}>"


def matvec_names() -> list[str]:
    """Every matvec instance: each format with 1..MAX_INPUTS inputs."""
    return [matvec_name(t, n) for t in BLOCK_STRUCTS for n in range(1, MAX_INPUTS + 1)]


GDN_KERNELS = ("delta_rule", "conv_silu")  # extern "C" kernels of kernels/gdn.cu
ROW_KERNELS = (
    "rmsnorm",
    "l2norm",
    "argmax",
    "rope_neox",
    "silu_mul",
    "sigmoid_mul",
    "gelu_mul",
)  # extern "C" kernels of kernels/rows.cu
SOURCES = ("matvec.cu", "gdn.cu", "rows.cu", "attention.cu")  # every .cu file of kernels/


def instantiation_source() -> str:
    """CUDA source that includes matvec.cu and instantiates every kernel of
    ``matvec_names`` (what nvcc must compile for the GPU build to succeed)."""
    lines = ['#include "matvec.cu"']
    for name in matvec_names():
        lines.append(
            f"template __global__ void {name}(const uint8_t*, int, int, const float*, float*);"
        )
    return "\n".join(lines) + "\n"
