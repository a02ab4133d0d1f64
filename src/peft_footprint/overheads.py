"""What a GPU adds on top of the bytes PyTorch tensors hold: explicit, documented terms with defaults.

- ``cublas_workspace_bytes``: PyTorch gives each cuBLAS handle a workspace from its caching allocator (so it
  counts in ``memory_allocated``/``reserved``): 4096 KiB x 8 = 32 MiB on Hopper (sm90) and later, else
  4096 KiB x 2 + 16 KiB x 8 = 8,519,680 B (``CUBLAS_WORKSPACE_CONFIG`` defaults,
  aten/src/ATen/cuda/CublasHandlePool.cpp). A training step uses two handles: the forward runs on the main
  thread, the backward on autograd's device thread.
- ``allocator_fragmentation``: the caching allocator rounds requests (512 B granules, 2 MiB small-block
  segments, 20 MiB segments for 1-10 MiB requests, large requests to 2 MiB) and cannot always reuse freed blocks
  of other sizes; reserved memory at the step's peak is the peak allocated bytes times (1 + this). Default 5 %, an
  assumption (typical of steady-state fine-tuning without ``expandable_segments``), not a measurement.
- ``cuda_context_bytes``: the CUDA context, kernels and library handles that ``nvidia-smi`` shows but PyTorch's
  allocator does not: default 512 MiB (typical of PyTorch 2.x with lazy module loading on data-centre GPUs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MiB = 2**20
LARGE_SEGMENT = 2 * MiB


@dataclass(frozen=True)
class Overheads:
    cublas_workspace_bytes: int = 4096 * 1024 * 2 + 16 * 1024 * 8
    cublas_handles: int = 2
    allocator_fragmentation: float = 0.05
    cuda_context_bytes: int = 512 * MiB

    def as_dict(self) -> dict:
        return asdict(self)


def overheads_for(hardware) -> Overheads:
    if hardware is None:
        return Overheads()
    arch = (getattr(hardware, "architecture", "") or "").lower()
    hopper = any(k in arch for k in ("hopper", "blackwell", "sm90", "sm100"))
    return Overheads(cublas_workspace_bytes=32 * MiB if hopper else Overheads.cublas_workspace_bytes)


def reserved_and_device(peak_bytes: int, ov: Overheads) -> dict[str, int]:
    workspaces = ov.cublas_workspace_bytes * ov.cublas_handles
    allocated = peak_bytes + workspaces
    fragmentation = int(allocated * ov.allocator_fragmentation)
    reserved = -(-(allocated + fragmentation) // LARGE_SEGMENT) * LARGE_SEGMENT
    return {
        "cublas_workspace_bytes": workspaces,
        "allocator_overhead_bytes": reserved - allocated,
        "reserved_bytes": reserved,
        "cuda_context_bytes": ov.cuda_context_bytes,
        "device_bytes": reserved + ov.cuda_context_bytes,
    }
