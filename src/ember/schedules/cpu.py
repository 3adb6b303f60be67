"""The CPU schedules (target kind ``cpu``: x86, ARM, RISC-V and wasm hosts alike).

The schedules of convolutions and pools are in ``cpu_conv.py``, of matrix products and attention
in ``cpu_matmul.py``, the row reductions' here; what they share is in ``cpu_loops.py`` (the
default schedule, register tiles) and ``cpu_model.py`` (the cost models, whose numbers are the
target's: ``Target.core``, ``Target.lanes``, ``Target.l2_bytes``).
"""

from __future__ import annotations

from ..te.schedule import Fuse, Split
from . import cpu_conv, cpu_matmul  # noqa: F401  (register their schedules)
from . import register, register_default
from .cpu_loops import default_schedule, row_length, vectorize_partials

register_default("cpu")(default_schedule)


@register("cpu", "softmax")
def softmax(a, s, out, target):
    """The default schedule, the partial sums vectorized, exp(x - max) computed into a row
    buffer at the row loop (read by the sum and the output)."""
    default_schedule(s, target)
    vectorize_partials(s)
    exp = [st for st in s.stages.values() if st.tensor.name == "softmax_exp"]
    if exp:
        root = s.root
        # the loop that encloses one row: the leaf before the first loop made from the last axis
        row_axis = {root.tensor.axes[-1]}
        for rel in root.relations:
            if isinstance(rel, Split) and rel.parent in row_axis:
                row_axis |= {rel.outer, rel.inner}
            elif isinstance(rel, Fuse) and (rel.outer in row_axis or rel.inner in row_axis):
                row_axis.add(rel.fused)
        first = next(k for k, leaf in enumerate(root.leaves) if leaf in row_axis)
        row = root.leaves[first - 1] if first else None
        st = exp[0]
        st.compute_at(root, row)
        inner = st.tensor.axes[-1]
        if isinstance(inner.extent, int) and inner.extent >= target.lanes:
            _, vi = st.split(inner, target.lanes)
            st.vectorize(vi)


@register("cpu", "layer_norm")
def layer_norm(a, s, out, target):
    """The default schedule with the mean's and variance's partial sums vectorized."""
    default_schedule(s, target)
    vectorize_partials(s)


@register("cpu", "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod")
def reduction(a, s, out, target):
    """The default schedule, parallel by the elements read rather than the few written, with
    the partial results of a reduction over the last axis (``ops.reduce.row_reduce``) vectorized."""
    default_schedule(s, target, work=row_length(s))
    vectorize_partials(s)
