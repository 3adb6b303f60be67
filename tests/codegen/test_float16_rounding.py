"""float16 in the C backend: a value an op leaves in float32 (a reduction's accumulator, a
stage kept at a loop of its reader) is rounded to float16 where the next op reads it, as the
reference interpreter (numpy) rounds every op's result.  The cases are built so that float32
sums are exact in any order: the outputs must then equal the reference's bit for bit."""

from __future__ import annotations

from ops.harness import Batch

H = "float16"


def test_float16_results_rounded_between_fused_ops():
    batch = Batch("f16_rounding")
    # a product of two float16 values is exact in float32: the matmul's sum over one term is
    # exact, the add that reads it (fused into the matmul's kernel) must see it rounded
    batch.case("matmul then add", lambda c: c.op("add", [
        c.op("matmul", [c.input((2, 9, 1), H, low=-4, high=4), c.input((2, 1, 33), H, low=-4, high=4)]),
        c.input((33,), H, low=-1, high=1)]), rtol=0, atol=0)
    # rows of 5 exponentials of [-3, 3] - max: their float32 sum is exact; x - max, exp, the
    # sum and the quotient are each rounded (ONNX's Softmax function on float16)
    batch.case("softmax last axis", lambda c: c.op("softmax", [c.input((40, 5), H, low=-3, high=3)], axis=1),
               rtol=0, atol=0)
    # (numpy sums an inner axis of float16 rounding after every add: within a few units in the last place)
    batch.case("softmax inner axis", lambda c: c.op("softmax", [c.input((4, 5, 12), H, low=-3, high=3)], axis=1),
               rtol=2 ** -8, atol=0)
    batch.check()
