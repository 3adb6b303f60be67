"""Region nodes (``if``, ``loop``; see ``ember.ops.control``) in a compiled model.

Each body is optimized, fused and lowered into kernels of its own (the same ``group_kernel``
path as the model's), and the generated entry runs them under C control flow:

* ``if``: ``if (*cond) { then kernels } else { else kernels }``; both branches write their
  outputs straight into the node's output buffers.  A branch first makes its own checks of the
  symbols (``Graph.checks`` that hold only where it is taken).
* ``loop``: each carried value has two buffers, the node's output and one in the scratch (the
  initial value is copied into the first); each iteration runs the body's kernels, reading the
  carried values from one buffer and writing the next ones into the other, and the two swap
  (pointers of the entry), so nothing is copied per iteration; after the loop the last values
  are copied to the node's output where they ended in the scratch.  The iteration number and
  the condition are variables of the entry.  A scan output is written in place, iteration
  ``i`` at row ``i`` of the node's output.

Nothing is allocated at run time: a region group gets one *scratch* buffer in the model's
arena (an extra output of its group, so the memory plan places it, live while the region
runs), and its bodies' intermediates (and a loop body's outputs) lie in it.  A body whose
intermediates are all static is planned like a model (``plan_memory``: buffers share bytes);
with symbolic shapes, each gets its own place at a symbolic offset (so the arena's growth for
larger inputs covers it).  Branches share the scratch (the larger one's size when both are
static).  Regions nest: an inner region's scratch is an intermediate of its body.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from ..errors import CodegenError
from ..graph.ir import Graph, Node, Value
from ..graph.types import TensorType
from ..ops import get_op
from ..passes import fuse, plan_memory
from ..passes.fusion import Group
from ..codegen.c import c_ident, c_type, check_lines, dim_c
from ..passes.base import Names
from .kernels import kernel_call
from .pipeline import PACK_WEIGHTS, Context, generic_steps, run_graph

#: the alignment of every buffer in a scratch (that of the arena's)
ALIGN = 64


def _round_up(n):
    return ((n + (ALIGN - 1)) // ALIGN) * ALIGN


def _nbytes(t: TensorType):
    from ..graph.types import np_dtype

    return t.num_elements * np_dtype(t.dtype).itemsize


def is_region(group: Group) -> bool:
    return len(group.nodes) == 1 and get_op(group.nodes[0].op).region


@dataclass
class Body:
    """A compiled body: its optimized graph, fused groups, and where its values lie in the
    region's scratch (byte offsets, ints or symbolic)."""

    graph: Graph
    groups: list[Group]
    offsets: dict[Value, object]
    size: object


def own_outputs(g: Graph, keep: tuple[int, ...] = ()) -> Graph:
    """``g`` with every output a distinct value computed by a node: an output that is an input,
    a constant or listed before is copied by a reshape to its own shape (a loop body writes its
    carried values into the buffers of the next iteration, a branch into the node's outputs).
    The outputs at positions ``keep`` stay as they are (a loop's condition passed on)."""
    from ..graph.builder import GraphBuilder

    seen: set[Value] = set()
    b = GraphBuilder.rewriting(g)
    for n in g.nodes:
        b.add_node(n)
    outs = []
    for k, v in enumerate(g.outputs):
        if k in keep and v is g.inputs[1]:
            outs.append(v)
            continue
        if v.producer is None or v.is_const or v in seen:
            v = b.op("reshape", [v], name=f"{v.name}_out", shape=tuple(v.shape))
        seen.add(v)
        outs.append(v)
    return b.finish(outs)


class Regions:
    """Compiles the bodies of a model's region groups and writes the C that runs them."""

    def __init__(self, target, opt_level: int, limits: dict, bounds: dict, sym_index: dict,
                 kernel_names: set[str], dump=None, ctx: Context | None = None):
        self.target = target
        #: the pipeline's context: its disabled passes, dumps and fallback reports
        self.ctx = Context(target, opt_level) if ctx is None else ctx
        self.opt_level = opt_level
        self.limits = limits
        self.bounds = bounds
        self.sym_index = sym_index
        self.used = Names(used=kernel_names)
        self.dump = dump
        self.bodies: dict[Node, list[Body]] = {}
        self.scratch: dict[Node, Value] = {}
        self._consts: dict[int, Value] = {}
        self._uid = itertools.count()
        self.kernels: list = []          # the bodies' PrimFuncs, in emission order

    # -- compiling the bodies ----------------------------------------------------------------

    def prepare(self, groups: list[Group]) -> None:
        """Compile the bodies of the region groups among ``groups`` (and of regions nested in
        them); each region group gets its scratch buffer as an extra output."""
        for grp in groups:
            if is_region(grp):
                self._prepare(grp)

    def constants(self) -> list[Value]:
        """The constants the bodies read (they go into the model's constants blob)."""
        return list(self._consts.values())

    def _prepare(self, grp: Group) -> None:
        node = grp.nodes[0]
        op = get_op(node.op)
        bodies = [self._body(b, node) for b in op.bodies(node.attrs)]
        sizes = [b.size for b in bodies]
        if all(isinstance(s, int) for s in sizes):
            size = max(sizes, default=0)
        else:
            size = sum(sizes[1:], sizes[0])     # a symbolic maximum has no form: the sum bounds it
        self.bodies[node] = bodies
        scratch = Value(f"{node.name}/scratch", TensorType((size,), "uint8"))
        self.scratch[node] = scratch
        grp.outputs.append(scratch)

    def _body(self, body: Graph, node: Node) -> Body:
        binds = [n.name for n in body.nodes if n.op == "bind_dims"]
        if binds:
            raise CodegenError(f"{node.op} node '{node.name}': its body binds dimensions from the data "
                               f"(bind_dims {', '.join(binds)}), which only the model's entry does")
        dump = self.ctx.dump
        # the body's passes dumped as <node>.<pass>
        ctx = replace(self.ctx, dump=(lambda stage, ir, at=c_ident(node.name): dump(f"{at}.{stage}", ir))
                      if dump else None)
        g = run_graph(body, ctx, generic_steps())
        g = own_outputs(g, (0,) if node.op == "loop" else ())
        g = run_graph(g, ctx, [PACK_WEIGHTS])
        groups = fuse(g)
        for k, grp in enumerate(groups):
            grp.name = self._kernel_name(f"{c_ident(node.name)}_{grp.name}")
            if is_region(grp):
                self._prepare(grp)
        for v in g.constants():
            self._consts.setdefault(v.uid, v)
        outputs = set(g.outputs)
        inner = list(dict.fromkeys(v for grp in groups for v in grp.outputs
                                   if v not in outputs and not v.is_const))
        offsets: dict[Value, object] = {}
        if all(v.type.is_static for v in inner):
            plan = plan_memory(g, groups)
            offsets.update(plan.offsets)
            size = plan.arena_bytes
        else:
            size = 0
            for v in inner:
                offsets[v] = size
                size = size + _round_up(_nbytes(v.type))
        if node.op == "loop":
            # the next condition and carried values of an iteration (the carried values swap
            # with the node's outputs from one iteration to the next)
            n = node.attrs["num_carried"]
            for v in g.outputs[:1 + n]:
                if v in offsets or v in g.inputs:
                    continue
                offsets[v] = size
                size = size + _round_up(_nbytes(v.type))
        return Body(g, groups, offsets, size)

    def _kernel_name(self, base: str) -> str:
        return self.used.fresh(base[:80])

    # -- the C that runs them ----------------------------------------------------------------

    def emit(self, grp: Group, where, gen) -> tuple[str, list[str]]:
        """The entry's C for region group ``grp`` (one block) and the kernels' C it calls.
        ``where(v)`` is the C pointer to an outer value (constants included)."""
        src: list[str] = []
        lines = self._region(grp.nodes[0], where, gen, src)
        return "\n  ".join(lines), src

    def _bytes(self, t: TensorType) -> str:
        n = _nbytes(t)
        return str(n) if isinstance(n, int) else f"(size_t){dim_c(n, self.sym_index)}"

    def _region(self, node: Node, where, gen, src: list[str]) -> list[str]:
        base = f"((unsigned char*){where(self.scratch[node])})"
        bodies = self.bodies[node]
        u = next(self._uid)
        if node.op == "if":
            then, other = bodies
            cond = where(node.inputs[0])
            out = [f"if (*(const _Bool*){cond}) {{"]
            for body, close in ((then, "} else {"), (other, "}")):
                # what the branch needs of the symbols, checked when it is taken
                out += ["  " + x for x in check_lines(body.graph.checks, self.sym_index)]
                env = dict(zip(body.graph.inputs, (where(v) for v in node.inputs[1:])))
                env.update(zip(body.graph.outputs, (where(v) for v in node.outputs)))
                out += ["  " + x for x in self._run_body(body, env, base, where, gen, src)]
                out.append(close)
            return ["{"] + ["  " + x for x in out] + ["}"]
        # loop
        (body,) = bodies
        g = body.graph
        n = node.attrs["num_carried"]
        it, go = f"ember_it{u}", f"ember_go{u}"
        m = where(node.inputs[0])
        out = [f"const int64_t ember_m{u} = *(const int64_t*){m};",
               f"_Bool {go} = *(const _Bool*){where(node.inputs[1])};",
               f"int64_t {it} = 0;"]
        # carried value k: read from cur, the next one written to nxt, the two swapped after
        # each iteration (double buffers: the node's output and a buffer of the scratch)
        cur = [f"ember_cur{u}_{k}" for k in range(n)]
        nxt = [f"ember_nxt{u}_{k}" for k in range(n)]
        for k in range(n):
            v = g.outputs[1 + k]
            t = c_type(v.dtype)
            out.append(f"{t}* {cur[k]} = {where(node.outputs[k])};")
            out.append(f"{t}* {nxt[k]} = {self._at(body, v, base)};")
            out.append(f"memcpy({cur[k]}, {where(node.inputs[2 + k])}, {self._bytes(v.type)});")
        env: dict[Value, str] = {g.inputs[0]: f"(const int64_t*)&{it}", g.inputs[1]: f"(const _Bool*)&{go}"}
        env.update(zip(g.inputs[2:2 + n], cur))
        env.update(zip(g.outputs[1:1 + n], nxt))
        env.update(zip(g.inputs[2 + n:], (where(v) for v in node.inputs[2 + n:])))
        counted = bool(node.attrs.get("counted"))
        scans = node.outputs[n:len(node.outputs) - counted]
        for v, o in zip(g.outputs[1 + n:], scans):
            row = self._elems(v.type)
            env[v] = f"({where(o)} + {it} * {row})"
        loop = self._run_body(body, env, base, where, gen, src)
        if g.outputs[0] is not g.inputs[1]:
            loop.append(f"{go} = *(const _Bool*){self._at(body, g.outputs[0], base)};")
        for k in range(n):
            t = c_type(g.outputs[1 + k].dtype)
            loop.append(f"{{ {t}* ember_t = {cur[k]}; {cur[k]} = {nxt[k]}; {nxt[k]} = ember_t; }}")
        out.append(f"for (; {it} < ember_m{u} && {go}; ++{it}) {{")
        out += ["  " + x for x in loop]
        out.append("}")
        for k in range(n):     # the last values, where the node's output is
            o = node.outputs[k]
            out.append(f"if ({cur[k]} != {where(o)}) memcpy({where(o)}, {cur[k]}, {self._bytes(o.type)});")
        if scans:
            length = node.attrs["length"]
            want = dim_c(length, self.sym_index)
            out.append(f"if ({it} {'>' if counted else '!='} {want}) {{ ember_set_error(\"loop node %s ran %lld "
                       f"iterations, but its scan outputs have %lld rows\", {_c_str(node.name)}, (long long){it}, "
                       f"(long long){want}); return -1; }}")
        if counted:
            # the rows past the iterations run are zeros; the count is the last output
            for v, o in zip(g.outputs[1 + n:], scans):
                row = f"(size_t)({self._elems(v.type)})"
                size = _nbytes(TensorType((), v.dtype))
                out.append(f"memset({where(o)} + {it} * {self._elems(v.type)}, 0, "
                           f"(size_t)({want} - {it}) * {row} * {size});")
            out.append(f"*(int64_t*){where(node.outputs[-1])} = {it};")
        return ["{"] + ["  " + x for x in out] + ["}"]

    def _elems(self, t: TensorType) -> str:
        n = t.num_elements
        return f"INT64_C({n})" if isinstance(n, int) else dim_c(n, self.sym_index)

    def _at(self, body: Body, v: Value, base: str) -> str:
        off = body.offsets[v]
        off_c = str(off) if isinstance(off, int) else dim_c(off, self.sym_index)
        return f"({c_type(v.dtype)}*)({base} + {off_c})"

    def _run_body(self, body: Body, env: dict, base: str, where, gen, src: list[str]) -> list[str]:
        """The calls of a body's kernels (and nested regions), its values placed by ``env``
        (inputs, outputs) or in the scratch at ``base``."""

        def w(v: Value) -> str:
            if v in env:
                return env[v]
            if v.is_const:
                return where(v)
            if v in body.offsets:
                return self._at(body, v, base)
            raise CodegenError(f"value {v.name} of a region body has no storage")

        lines: list[str] = []
        for grp in body.groups:
            if is_region(grp):
                lines += self._region(grp.nodes[0], w, gen, src)
                continue
            f, code, call = kernel_call(grp, self.target, w, gen, self.limits, self.bounds, self.sym_index,
                                        ctx=self.ctx)
            self.kernels.append(f)
            src.append(code)
            lines.append(call)
            if self.dump:
                self.dump(f"region_kernel_{f.name}", f)
        return lines


def _c_str(text: str) -> str:
    from ..codegen.c import c_string

    return c_string(text)
