"""Mutation fuzzing of the ONNX frontend: small valid models built with onnx.helper, mutated at
the byte and field level, compiled in a forked child with a timeout.  Prints a tally of the
outcomes and every leaked (non-Ember) exception, crash and hang, grouped by where it came from.

    python tests/frontend/fuzz_onnx.py [--count N] [--seed S] [--graph-only]
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import random
import signal
import sys
import traceback

import numpy as np
import onnx
from onnx import TensorProto as T, helper, numpy_helper

import ember
from ember.errors import EmberError


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def seeds() -> list[onnx.ModelProto]:
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = []

    def model(nodes, inputs, outputs, inits=(), opset=17):
        g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])

    out.append(model([helper.make_node("Add", ["x", "w"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
                     [_vi("x", T.FLOAT, [2, 3])], [_vi("y", T.FLOAT, [2, 3])],
                     [numpy_helper.from_array(f(2, 3), "w")]))
    out.append(model([helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                      helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                     [_vi("x", T.FLOAT, [1, 2, 6, 6])], [_vi("y", T.FLOAT, [1, 4, 3, 3])],
                     [numpy_helper.from_array(f(4, 2, 3, 3), "w"), numpy_helper.from_array(f(4), "b")]))
    out.append(model([helper.make_node("Reshape", ["x", "s"], ["r"]),
                      helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
                      helper.make_node("Softmax", ["t"], ["y"], axis=-1)],
                     [_vi("x", T.FLOAT, [2, 6])], [_vi("y", T.FLOAT, [4, 3])],
                     [numpy_helper.from_array(np.array([3, 4], np.int64), "s")]))
    out.append(model([helper.make_node("MatMul", ["x", "w"], ["m"]),
                      helper.make_node("ReduceMean", ["m", "ax"], ["r"], keepdims=1),
                      helper.make_node("Sub", ["m", "r"], ["y"])],
                     [_vi("x", T.FLOAT, ["n", 4])], [_vi("y", T.FLOAT, ["n", 5])],
                     [numpy_helper.from_array(f(4, 5), "w"), numpy_helper.from_array(np.array([1], np.int64), "ax")],
                     opset=18))
    out.append(model([helper.make_node("Gather", ["e", "i"], ["g"], axis=0),
                      helper.make_node("Slice", ["g", "st", "en"], ["s"]),
                      helper.make_node("Concat", ["s", "s"], ["y"], axis=1)],
                     [_vi("i", T.INT64, [3])], [_vi("y", T.FLOAT, [3, 4])],
                     [numpy_helper.from_array(f(10, 4), "e"), numpy_helper.from_array(np.array([0, 1], np.int64), "st"),
                      numpy_helper.from_array(np.array([3, 3], np.int64), "en")]))
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["o"])], "then", [], [_vi("o", T.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["o2"])], "else", [], [_vi("o2", T.FLOAT, [2])])
    out.append(model([helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True), "cv")),
                      helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                     [_vi("x", T.FLOAT, [2])], [_vi("y", T.FLOAT, [2])]))
    out.append(model([helper.make_node("Cast", ["x"], ["c"], to=T.INT32),
                      helper.make_node("Where", ["b", "c", "z"], ["w"]),
                      helper.make_node("Expand", ["w", "sh"], ["y"])],
                     [_vi("x", T.FLOAT, [3]), _vi("b", T.BOOL, [3])], [_vi("y", T.INT32, [2, 3])],
                     [numpy_helper.from_array(np.zeros(3, np.int32), "z"),
                      numpy_helper.from_array(np.array([2, 3], np.int64), "sh")]))
    return out


_OPS = ["Relu", "Add", "Reshape", "Conv", "Gather", "Slice", "Concat", "MatMul", "Softmax", "If", "Cast",
        "Where", "Expand", "Transpose", "ReduceMean", "Split", "Tile", "Pad", "Resize", "TopK", "Loop",
        "Unsqueeze", "Squeeze", "Flatten", "Gemm", "LSTM", "Einsum", "NonZero", "ScatterND", "Range"]


def _rand_value(rng: random.Random):
    return rng.choice([0, 1, -1, 2, 3, 7, -7, 2**31, -(2**31), 2**63 - 1, -(2**63), 10**9, 65536])


def mutate_fields(m: onnx.ModelProto, rng: random.Random) -> bytes:
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(18)
        nodes = list(g.node)
        if k == 0 and nodes:
            rng.choice(nodes).op_type = rng.choice(_OPS)
        elif k == 1 and nodes:
            n = rng.choice(nodes)
            if n.attribute:
                a = rng.choice(n.attribute)
                if a.ints:
                    a.ints[rng.randrange(len(a.ints))] = _rand_value(rng)
                elif a.type == onnx.AttributeProto.INT:
                    a.i = _rand_value(rng)
                else:
                    a.type = rng.randrange(15)
            else:
                n.attribute.append(helper.make_attribute(rng.choice(["axis", "perm", "to", "pads"]), _rand_value(rng)))
        elif k == 2 and nodes:
            n = rng.choice(nodes)
            names = [i.name for i in g.input] + [t.name for t in g.initializer] + [o for x in nodes for o in x.output]
            if rng.random() < 0.5 and n.input:
                n.input[rng.randrange(len(n.input))] = rng.choice(names + ["", "nope"])
            else:
                n.input.append(rng.choice(names + [""]))
        elif k == 3 and nodes:
            n = rng.choice(nodes)
            if rng.random() < 0.5 and n.input:
                del n.input[rng.randrange(len(n.input))]
            else:
                n.output.append(rng.choice(["extra", n.output[0] if n.output else "y"]))
        elif k == 4 and g.initializer:
            t = rng.choice(g.initializer)
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = _rand_value(rng)
            else:
                t.dims.append(_rand_value(rng))
        elif k == 5 and g.initializer:
            t = rng.choice(g.initializer)
            t.data_type = rng.randrange(28)
        elif k == 6 and g.initializer:
            t = rng.choice(g.initializer)
            t.float_data.extend([1.0] * rng.randint(0, 3))
            if rng.random() < 0.5:
                t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
        elif k == 7:
            vi = rng.choice(list(g.input) + list(g.output))
            tt = vi.type.tensor_type
            if rng.random() < 0.5:
                tt.elem_type = rng.randrange(28)
            elif tt.shape.dim:
                tt.shape.dim[rng.randrange(len(tt.shape.dim))].dim_value = _rand_value(rng)
        elif k == 8:
            m.opset_import[0].version = rng.choice([1, 5, 7, 11, 13, 20, 23, 999, -1, 0])
        elif k == 9:
            m.ir_version = rng.choice([0, 1, 3, 10, 99, -5])
        elif k == 10 and g.initializer:
            g.initializer.append(rng.choice(g.initializer))
        elif k == 11 and nodes:
            n = rng.choice(nodes)
            if n.output:
                n.output[0] = rng.choice([o for x in nodes for o in x.output] + [i.name for i in g.input])
        elif k == 12 and g.initializer:
            t = rng.choice(g.initializer)
            t.data_location = T.EXTERNAL
            e = t.external_data.add()
            e.key, e.value = rng.choice([("location", "/dev/zero"), ("location", "../../etc/passwd"),
                                         ("location", "x.bin"), ("offset", "-4"), ("bogus", "1")])
        elif k == 13:
            g.value_info.append(_vi(rng.choice([o for x in nodes for o in x.output] or ["y"]),
                                    rng.randrange(1, 14), [rng.randint(-2, 5)]))
        elif k == 14 and nodes:
            n = rng.choice(nodes)
            n.domain = rng.choice(["", "ai.onnx", "com.microsoft", "ai.onnx.ml", "bogus"])
        elif k == 16 and nodes:
            # an attribute of any node set to an extreme value of its own type
            n = rng.choice(nodes)
            if n.attribute:
                a = rng.choice(n.attribute)
                if a.type == onnx.AttributeProto.INTS:
                    a.ints[:] = [_rand_value(rng) for _ in range(rng.randint(0, 6))]
                elif a.type == onnx.AttributeProto.FLOAT:
                    a.f = rng.choice([float("nan"), float("inf"), -1e30, 0.0])
                elif a.type == onnx.AttributeProto.STRING:
                    a.s = rng.choice([b"", b"\xff\xfe", b"x" * 1000, b"LEFT"])
                elif a.type == onnx.AttributeProto.INT:
                    a.i = _rand_value(rng)
        elif k == 17 and g.initializer:
            # an initializer's values replaced (same size) with extreme ones
            t = rng.choice(g.initializer)
            arr = numpy_helper.to_array(t).copy()
            if arr.size:
                flat = arr.reshape(-1)
                if arr.dtype.kind == "f":
                    flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
                elif arr.dtype.kind in "iu":
                    info = np.iinfo(arr.dtype)
                    flat[rng.randrange(flat.size)] = rng.choice([info.min, info.max, 0, -1 if info.min else 1])
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
        elif k == 15 and nodes:
            rng.shuffle(nodes)
            del g.node[:]
            g.node.extend(nodes[: rng.randint(0, len(nodes))] + nodes)
    return m.SerializeToString()


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(4)
        if not b:
            break
        i = rng.randrange(len(b))
        if k == 0:
            b[i] = rng.randrange(256)
        elif k == 1:
            b[i] ^= 1 << rng.randrange(8)
        elif k == 2:
            del b[i: i + rng.randint(1, 8)]
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(b)


def run_one(data: bytes, graph_only: bool, timeout: float):
    """Compile ``data`` in a forked child; returns (kind, detail)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.alarm(int(timeout) + 1)
        try:
            if graph_only:
                from ember.passes import optimize

                optimize(ember.from_onnx(data))
            else:
                ember.compile(data, cache=False)
            res = ("ok", "")
        except EmberError as e:
            res = ("ember", getattr(e, "code", "?"))
        except BaseException as e:  # noqa: BLE001 - that is what we look for
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f"{os.path.basename(fr.filename)}:{fr.lineno}" for fr in reversed(tb)
                          if "/ember/" in fr.filename), "?")
            res = ("leak", f"{type(e).__name__} at {where}: {str(e)[:120]}")
        os.write(w, pickle.dumps(res))
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return pickle.loads(b"".join(chunks))
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
        return ("hang", "")
    return ("crash", f"status {status}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--graph-only", action="store_true", help="from_onnx + passes.optimize, no codegen")
    ap.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    base = seeds()
    tally = collections.Counter()
    found = collections.defaultdict(list)
    for k in range(args.count):
        m = rng.choice(base)
        data = mutate_fields(m, rng) if k % 2 == 0 else mutate_bytes(m.SerializeToString(), rng)
        kind, detail = run_one(data, args.graph_only, args.timeout)
        tally[kind] += 1
        if (k + 1) % 100 == 0:
            print(f"  ... {k + 1}: " + ", ".join(f"{a} {b}" for a, b in sorted(tally.items())), flush=True)
        if kind in ("leak", "crash", "hang"):
            key = detail.split(":")[0] + ":" + detail.split(":")[1] if kind == "leak" else kind
            found[key].append((k, detail))
    print(f"{args.count} mutants: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    for key, items in sorted(found.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(items):4d}  {items[0][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
