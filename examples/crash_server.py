"""A function that exits at once with an error on stderr (a broken container)."""

import sys

print("crash: loading model ...", flush=True)
print("crash: FATAL: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected", file=sys.stderr, flush=True)
sys.exit(3)
