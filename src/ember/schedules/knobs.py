"""Schedule knobs: every choice a CPU schedule makes by a cost model or a rule of thumb can be
set instead, per compile, through the target (``ember.compile(model, knobs={"matmul.rows": 4})``,
``ember compile --knob matmul.rows=4``): the defaults are what the schedules compute, a tuner
searches the values.  Any valid value gives correct code; only the speed changes.
"""

from __future__ import annotations

from ..errors import TargetError


def _int_in(lo: int, hi: int, candidates: tuple | None = None):
    def check(v):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    check.expects = f"an integer from {lo} to {hi}"
    check.candidates = candidates or tuple(range(lo, hi + 1))
    return check


def _one_of(*choices):
    def check(v):
        return v in choices
    check.expects = "one of " + ", ".join(repr(c) for c in choices)
    check.candidates = choices
    return check


#: name -> (what it sets, its default, the check of a value)
KNOBS = {
    "matmul.rows": ("rows of a matmul's register tile", "register_rows' cost model", _int_in(1, 16)),
    "matmul.vectors": ("vectors per row of a matmul's register tile", "matmul_vectors: 4 with 32 "
                       "registers, else 2, when they divide N; 1 when only one does", _int_in(1, 4)),
    "matmul.unroll": ("copies of the register tile per step of a matmul's reduction (its innermost reduce loop "
                      "split and unrolled; a factor that does not divide it leaves it)", "1: not unrolled",
                      _one_of(1, 2, 4, 8)),
    "conv2d.rows": ("output pixels per register tile of a blocked (NCHWc) convolution",
                    "register_rows' cost model (depthwise: 5-8)", _int_in(1, 16)),
    "conv2d.order": ("which loop of a dense blocked convolution goes outside",
                     "conv_loop_order's L2 model", _one_of("rows", "channels")),
    "conv2d.unroll": ("copies of the register tile per step of a dense blocked convolution's innermost "
                      "reduction (the channels of an input block), as matmul.unroll", "1: not unrolled",
                      _one_of(1, 2, 4, 8)),
    "attention.rows": ("query rows per tile of the fused attention kernel", "register_rows (at most 12 "
                       "accumulators)", _int_in(1, 16)),
    "pool.rows": ("output pixels per register tile of a blocked pooling", "pick_tile in 2-14",
                  _int_in(1, 16)),
    "vector.lanes": ("float32 lanes of the generated code's vectors (at most the target's)",
                     "the target's: 16 with AVX-512, 8 with AVX2, 4 otherwise", _one_of(4, 8, 16)),
    "parallel_min": ("output elements below which a default-scheduled kernel runs on one thread",
                     str(16384), _int_in(0, 1 << 40, (0, 1024, 4096, 16384, 65536, 262144, 1 << 40))),
}

#: knobs that hold for a whole model, never for one kernel alone: the vector width is the C
#: generator's and the layout passes' too
MODEL_KNOBS = frozenset({"vector.lanes"})


def candidates(name: str) -> tuple:
    """The values a tuner tries for knob ``name`` (every valid one, or a spread of them)."""
    return KNOBS[name][2].candidates


def check_kernel_knobs(knobs) -> dict:
    """Like :func:`check_knobs`, for the knobs of one kernel: the model-wide ones are refused."""
    out = check_knobs(knobs)
    wide = sorted(set(out) & MODEL_KNOBS)
    if wide:
        raise TargetError(f"schedule knob {wide[0]!r} holds for a whole model and cannot be set for one kernel")
    return out


def check_knobs(knobs) -> dict:
    """``knobs`` as a dict, every name known and every value valid, else a TargetError."""
    out = {}
    for name, value in dict(knobs).items():
        if name not in KNOBS:
            raise TargetError(f"unknown schedule knob {name!r}; the knobs are: {', '.join(sorted(KNOBS))}")
        check = KNOBS[name][2]
        if not check(value):
            raise TargetError(f"schedule knob {name!r} expects {check.expects}, got {value!r}")
        out[name] = value
    return out
