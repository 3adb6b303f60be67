"""The entry's part for dimensions the data decides (``bind_dims``, ``ember.ops.dynamic``).

A model whose graph binds *data symbols* gets, beyond the entry of a model with symbolic
input shapes:

* after the kernel that writes a ``bind_dims`` node's output, C that reads the values into
  ``syms``, checks each against 0 and its limit (and the element count a Reshape needs), and
  returns ``EMBER_ERROR_SHAPE`` with a message naming the node when one is wrong;
* a *run-time block* per tensor whose size mentions a data symbol (such tensors are left out of
  the arena's plan): once every symbol of its size is bound, the entry reserves it
  (``ember_block_reserve``, ``runtime/c/blocks.c``: one block per tensor and model instance,
  kept across runs and grown when a run needs more, checked against the instance's tensor
  limit) and the kernels read and write it there;
* graph outputs whose shape the data decides live in their block too: the runtime owns them,
  and after the run ``ember_model_output_shape`` / ``ember_model_output`` give their shape and
  data (generated ``ember_model_output_dims`` and ``ember_model_output_block``).

Sizes are computed with saturating arithmetic (``dim_c(..., saturating=True)``), so values
that would overflow a size ask for more than any limit instead of wrapping to a small block.
"""

from __future__ import annotations

import numpy as np

from ..codegen.c import c_string, c_type, dim_c
from ..errors import CodegenError
from ..graph.ir import Graph, Node, Value
from ..ops import get_op
from ..ops.dynamic import limits_of
from ..symbolic import symbols_of

#: the return code of a run whose data gives an invalid dimension (ember_runtime.h)
ERROR_SHAPE = "EMBER_ERROR_SHAPE"


def data_symbols(g: Graph) -> list[str]:
    """The symbols the graph's ``bind_dims`` nodes bind, in node order."""
    return [s for n in g.nodes if n.op == "bind_dims" for s in n.attrs["symbols"]]


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


class DataDims:
    """The run-time blocks and bindings of one model (empty for a model without data symbols)."""

    def __init__(self, g: Graph, groups, sym_index: dict[str, int], limits: dict[str, int]):
        self.syms = set(data_symbols(g))
        self.sym_index = sym_index
        self.blocks: dict[Value, int] = {}
        if not self.syms:
            return
        for grp in groups:
            region = [n for n in grp.nodes if get_op(n.op).region]
            if region:
                self._check_region(region[0])
            for v in region[0].outputs if region else [grp.output]:
                if v.type.symbols & self.syms and v not in self.blocks:
                    self.blocks[v] = len(self.blocks)
        self.output_block = [self.blocks.get(v, -1) for v in g.outputs]
        # where each block can be reserved: after the last bind_dims its size needs
        binder = {s: n for n in g.nodes if n.op == "bind_dims" for s in n.attrs["symbols"]}
        group_of = {grp.output: k for k, grp in enumerate(groups)}
        self.reserve_after: dict[Node, list[Value]] = {}
        for v in self.blocks:
            needed = [binder[s] for s in v.type.symbols & self.syms]
            last = max(needed, key=lambda n: group_of[n.outputs[0]])
            self.reserve_after.setdefault(last, []).append(v)

    def _check_region(self, n: Node) -> None:
        """A region node may write tensors whose size the data decides only as a loop's scan
        outputs of a length the data gives (their rows are written in place, in the outputs'
        blocks); its operands, carried values and bodies have sizes the input shapes decide."""
        scans = n.outputs[n.attrs["num_carried"]:] if n.op == "loop" else []
        others = [v for v in n.inputs + n.outputs if v not in scans]
        touched = {s for v in others for s in v.type.symbols} & self.syms
        touched |= {s for v in scans for s in symbols_of(v.type.shape[1:])} & self.syms
        if touched:
            raise CodegenError(f"{n.op} node '{n.name}' reads or writes tensors whose size the data decides "
                               f"({', '.join(sorted(touched))}); a region op takes only sizes the input shapes "
                               f"decide (but for the length of a loop's scan outputs)")

    def __bool__(self) -> bool:
        return bool(self.syms)

    @property
    def entry_params(self) -> str:
        return "int64_t* syms, const int64_t* offsets, ember_blocks* blocks"

    def where(self, v: Value) -> str | None:
        """Where ``v`` lives when it is in a run-time block, else None."""
        j = self.blocks.get(v)
        return None if j is None else f"({c_type(v.dtype)}*)blocks->ptr[{j}]"

    def after_kernel(self, out: Value, where: str) -> list[str]:
        """The entry's C after the kernel writing ``out``: bind and check its symbols when it is a
        ``bind_dims`` output, then reserve the blocks that can now be sized."""
        n = out.producer
        if n is None or n.op != "bind_dims":
            return []
        a = n.attrs
        who = c_string(f"bind_dims node '{n.name}'")[1:-1]
        lines = [f"{{ const int64_t* bound = (const int64_t*){where};"]
        for k, (s, lim) in enumerate(zip(a["symbols"], limits_of(a))):
            j = self.sym_index[s]
            lines.append(f"  if (bound[{k}] < 0) {{ ember_set_error(\"{who}: the data gives the dimension {s} = %lld, "
                         f"which is negative\", (long long)bound[{k}]); return {ERROR_SHAPE}; }}")
            if lim >= 0:
                lines.append(f"  if (bound[{k}] > INT64_C({lim})) {{ ember_set_error(\"{who}: the data gives the "
                             f"dimension {s} = %lld, above its limit {lim}\", (long long)bound[{k}]); "
                             f"return {ERROR_SHAPE}; }}")
            lines.append(f"  syms[{j}] = bound[{k}];")
        numel = a["numel"]
        if not (isinstance(numel, int) and numel < 0):
            prod = "INT64_C(1)"
            for k in range(len(a["symbols"])):
                prod = f"ember_sat_mul({prod}, bound[{k}])"
            want = dim_c(numel, self.sym_index)
            lines.append(f"  if ({prod} != {want}) {{ ember_set_error(\"{who}: the data gives a shape of %lld elements "
                         f"where %lld are needed\", (long long){prod}, (long long){want}); return {ERROR_SHAPE}; }}")
        for v in self.reserve_after.get(n, ()):
            size = dim_c(v.type.num_elements * _itemsize(v.dtype), self.sym_index, saturating=True)
            what = c_string(f"%{v.name} ({v.type})")
            lines.append(f"  {{ int rc = ember_block_reserve(blocks, {self.blocks[v]}, {size}, {what}); "
                         "if (rc) return rc; }")
        lines.append("}")
        return lines

    def functions(self, outputs: list[tuple[str, tuple]]) -> str:
        """C of ``ember_model_num_blocks``, ``ember_model_output_block`` and
        ``ember_model_output_dims`` (see ember_kernel.h)."""
        lines = [f"int ember_model_num_blocks(void) {{ return {len(self.blocks)}; }}",
                 "int ember_model_output_block(int i) {",
                 "  switch (i) {"]
        lines += [f"    case {i}: return {j};" for i, j in enumerate(self.output_block) if j >= 0]
        lines += ["    default: return -1;", "  }", "}",
                  "void ember_model_output_dims(const int64_t* syms, int i, int64_t* shape) {",
                  "  (void)syms; (void)shape;",
                  "  switch (i) {"]
        for i, (_, dims) in enumerate(outputs):
            body = " ".join(f"shape[{k}] = {dim_c(d, self.sym_index)};" for k, d in enumerate(dims))
            lines.append(f"    case {i}: {body} break;")
        lines += ["    default: break;", "  }", "}", ""]
        return "\n".join(lines)
