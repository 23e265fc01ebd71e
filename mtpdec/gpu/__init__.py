"""GPU side (CuPy RawModules built from ``kernels/*.cu``): sources and kernel names here,
the CuPy runtime in ``mtpdec.gpu.runtime`` (imported only when a GPU is asked for)."""
