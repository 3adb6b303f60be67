"""The GPU schedules (target family ``gpu``: CUDA and OpenCL devices alike).

Each output element is one thread: the default schedule fuses the output's loops into one,
splits it into blocks of :data:`THREADS` threads and binds the two parts to ``blockIdx.x`` and
``threadIdx.x``; a split that does not divide the output gets a bounds check (a bound loop
cannot have a tail copy).  Every reduction of the kernel (the sum of a matmul or convolution,
the max and sum of a softmax) is computed by the thread of the element that reads it, in the
thread's own registers (``compute_at`` the thread loop), so it needs no shared memory and no
barrier.  Shared-memory tiling and tree reductions across the threads of a block are not written
yet (see docs/design.md, "GPU").
"""

from __future__ import annotations

from ..errors import CodegenError
from . import register_default

#: threads per block of the default schedule
THREADS = 256


@register_default("gpu")
def one_thread_per_element(s, target) -> None:
    s.guard_uneven = True
    root = s.root
    leaves = list(root.leaves)
    for v in leaves:
        if not isinstance(v.extent, int):
            raise CodegenError(f"GPU kernels need static shapes: {s.output.name} has the symbolic "
                               f"extent {v.extent!r}")
    if not leaves:
        return                  # a scalar: one thread of one block (tir.gpu.as_gpu_kernel)
    fused = leaves[0]
    for v in leaves[1:]:
        fused = root.fuse(fused, v)
    threads = int(target.knob("gpu.threads", THREADS))
    block, thread = root.split(fused, max(1, min(threads, fused.extent)))
    root.bind(block, "blockIdx.x")
    root.bind(thread, "threadIdx.x")
    for st in s.stages.values():
        if st.attached:
            st.compute_at(root, thread)
