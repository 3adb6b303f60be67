"""Building loop-IR kernels into a runnable module without a graph (for schedule tests).

``build_kernels(specs)`` takes ``(kernel, input arrays' shapes/dtypes, output shape/dtype)``
entries, emits one C translation unit in which the model entry calls every kernel with its own
inputs and output, compiles it and returns an :class:`ember.Module`.  Model input ``k{i}_in{j}``
is input j of kernel i; output ``k{i}_out`` its result.
"""

from __future__ import annotations

from ember.codegen.c import CGenerator, c_type, module_source
from ember.runtime import Module
from ember.target import host
from ember.toolchain import build_shared


def build_kernels(specs, flags=("-O1",), name: str = "kernels") -> Module:
    lanes = host().lanes
    gen = CGenerator(lanes)
    srcs, entry, ins, outs = [], [], [], []
    for i, (f, in_types, out_type) in enumerate(specs):
        srcs.append(gen.kernel(f))
        args = []
        for j, (shape, dtype) in enumerate(in_types):
            args.append(f"(const {c_type(dtype)}*)inputs[{len(ins)}]")
            ins.append({"name": f"k{i}_in{j}", "dtype": dtype, "shape": list(shape)})
        args.append(f"({c_type(out_type[1])}*)outputs[{len(outs)}]")
        outs.append({"name": f"k{i}_out", "dtype": out_type[1], "shape": list(out_type[0])})
        entry.append(f"{f.name}({', '.join(args)});")
    meta = {"format": 1, "ember_version": "test", "name": name, "target": "cpu", "inputs": ins, "outputs": outs,
            "arena_bytes": 0, "constants_bytes": 64, "kernels": len(specs)}
    source = module_source(name, lanes, srcs, entry, meta, 0)
    lib = build_shared({"model.c": source}, {"ember_constants": bytes(64)}, flags=list(flags), name=name)
    return Module(lib)
