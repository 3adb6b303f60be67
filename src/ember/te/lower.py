"""Lowering a scheduled tensor-expression program to one loop-IR kernel.

The root stage's loops are generated in its leaf order.  Inlined stages are substituted into
their readers.  Each attached stage (a reduction) is computed, at its attach point, into a local
buffer that covers the *region* the root's inner loops will read: one element per root axis
that the stage depends on and whose loops lie inside the attach point.

Splits whose factor does not divide the extent get a main loop over whole tiles and a tail copy
of the loop body with the inner extent set to the remainder, so inner loops stay free of guards
and can be vectorized.  A symbolic extent gets the same: whole tiles, then a tail of
``extent % factor`` (possibly empty).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CodegenError
from ..symbolic import product
from ..tir.analysis import bound, key, linear_form, simplify_index, substitute, upper_bound
from ..tir.expr import Cast, Const, Expr, Load, Var, as_expr, binop, is_float_dtype, sym_expr
from ..tir.stmt import Allocate, Buffer, For, IfThenElse, PrimFunc, Seq, Stmt, Store
from .schedule import Schedule, Split, Stage, ceil_div
from .tensor import ArgReduce, Reduce, Tensor, TensorLoad, extent_of, max_value, min_value
from ..tir.analysis import rebuild


#: the largest tail of a symbolic register tile that gets an unrolled copy per size
MAX_TAIL_CASES = 8


class _Full:
    """Axis-map entry of a dim that a reader indexes with one of its own reduce axes: the whole
    dim is computed in the region (how a reduction is split into per-lane partial results and a
    final combine, the "rfactor" of Halide and TVM)."""

    def __repr__(self):
        return "FULL"


FULL = _Full()


def _flat(dims, idx) -> Expr:
    out: Expr | None = None
    for d, i in zip(dims, idx):
        out = i if out is None else binop("add", binop("mul", out, as_expr(d)), i)
    return Const(0) if out is None else out


def _divisible(e, f: int) -> bool:
    """Whether the extent ``e`` (int or expression) is a multiple of ``f`` for every value of its
    size variables."""
    if isinstance(e, int):
        return e % f == 0
    lf = linear_form(e)
    return lf is not None and lf[1] % f == 0 and all(c % f == 0 for _, c in lf[0].values())


def identity_of(combiner: str, dtype: str) -> Const:
    if combiner == "sum":
        return Const(0, dtype)
    if combiner == "prod":
        return Const(1, dtype)
    if combiner == "max":
        return min_value(dtype)
    return max_value(dtype)


def combine(combiner: str, acc: Expr, v: Expr) -> Expr:
    return {"sum": lambda: binop("add", acc, v), "prod": lambda: binop("mul", acc, v),
            "max": lambda: binop("max", acc, v), "min": lambda: binop("min", acc, v)}[combiner]()


@dataclass
class LoopNest:
    """Leaf loops of a stage and the value of every axis in terms of them."""

    leaves: list
    extents: dict          # leaf -> extent
    value: dict            # axis or intermediate var -> expression in leaves
    tails: dict            # outer leaf -> (inner leaf, main extent, remainder) for uneven splits
    guards: list           # (axis, extent) needing a bounds check


def loop_nest(stage: Stage, extent_of: dict | None = None) -> LoopNest:
    ext = dict(extent_of or {})
    for v in stage.axes + stage.reduce_axes:
        ext.setdefault(v, v.extent)
    tails, guards = {}, []
    for rel in stage.relations:
        if isinstance(rel, Split):
            pe = ext[rel.parent]
            if isinstance(pe, int):
                ext[rel.outer] = -(-pe // rel.factor)
                ext[rel.inner] = min(rel.factor, pe)
                if pe % rel.factor and pe > rel.factor:
                    tails[rel.outer] = (rel.inner, pe // rel.factor, pe % rel.factor, rel.parent)
            else:
                # a symbolic extent: whole tiles, then a tail of pe % factor (maybe empty)
                ext[rel.outer] = ceil_div(pe, rel.factor)
                ext[rel.inner] = rel.factor
                if not _divisible(pe, rel.factor):
                    tails[rel.outer] = (rel.inner, simplify_index(binop("div", pe, Const(rel.factor))),
                                        simplify_index(binop("mod", pe, Const(rel.factor))), rel.parent)
        else:
            oe, ie = ext[rel.outer], ext[rel.inner]
            ext[rel.fused] = oe * ie if isinstance(oe, int) and isinstance(ie, int) else \
                simplify_index(binop("mul", as_expr(oe), as_expr(ie)))
    value: dict = {leaf: leaf for leaf in stage.leaves}
    for rel in reversed(stage.relations):
        if isinstance(rel, Split):
            value[rel.parent] = binop("add", binop("mul", value[rel.outer], Const(rel.factor)), value[rel.inner])
        else:
            ie = ext[rel.inner]
            value[rel.outer] = binop("div", value[rel.fused], as_expr(ie))
            value[rel.inner] = binop("mod", value[rel.fused], as_expr(ie))
    # uneven splits whose inner loop is not below the outer one, or that were split/fused again,
    # fall back to a bounds check on the parent axis
    pos = {v: k for k, v in enumerate(stage.leaves)}
    guard_all = stage.schedule.guard_uneven
    for outer, (inner, main, rem, parent) in list(tails.items()):
        if guard_all or outer not in pos or inner not in pos or pos[inner] < pos[outer]:
            del tails[outer]
            guards.append((parent, ext[parent]))
    return LoopNest(list(stage.leaves), ext, value, tails, guards)


class Lowering:
    def __init__(self, sched: Schedule, name: str, params: list[Tensor], buffers: dict | None = None):
        self.s = sched
        self.name = name
        self.buffers: dict[int, Buffer] = {}
        for t in params:
            buf = (buffers or {}).get(t.uid) or Buffer(t.name, t.dtype, _size(t.shape), "global",
                                                      const=t is not sched.output)
            self.buffers[t.uid] = buf
        if sched.output.uid not in self.buffers:
            raise CodegenError(f"kernel {name}: the output tensor is not among the parameters")
        for t in sched.placeholders():
            if t.uid not in self.buffers:
                raise CodegenError(f"kernel {name}: input {t.name} is not among the parameters")
        self.params = [self.buffers[t.uid] for t in params]
        self.root = sched.root
        self.attached = [st for st in (sched.stages[t.uid] for t in sched.tensors if t.uid in sched.stages)
                         if st.attached]
        self._inline_cache: dict[int, Expr] = {}
        self.local: dict = {}
        self.local_order: dict = {}

    # ---- inlining -----------------------------------------------------------------------

    def expand(self, e: Expr) -> Expr:
        """Substitute inlined stages into ``e`` until only placeholders and attached stages are read.
        A subexpression several parents share (TFLite's requantization reads its terms more than
        once) is expanded once and stays shared: a tree walk copied it per parent, which grows
        exponentially with the nesting."""
        memo: dict[int, tuple[Expr, Expr]] = {}
        reads: dict[tuple, Expr] = {}

        def go(x: Expr) -> Expr:
            got = memo.get(id(x))
            if got is None:
                got = memo[id(x)] = (x, convert(x))     # x kept alive: its id is not reused
            return got[1]

        def convert(x: Expr) -> Expr:
            if isinstance(x, TensorLoad):
                idx = tuple(go(i) for i in x.indices)
                st = self.s.stages.get(x.tensor.uid)
                if st is not None and st.inlined:
                    # reads of one inlined tensor at equal indices (separate nodes of the
                    # reader's compute) share one expansion
                    k = (x.tensor.uid,) + tuple(key(i) for i in idx)
                    got = reads.get(k)
                    if got is None:
                        body = self.inlined_body(x.tensor)
                        got = reads[k] = go(substitute(body, dict(zip(x.tensor.axes, idx))))
                    return got
                return TensorLoad(x.tensor, idx)
            if isinstance(x, (Reduce, ArgReduce)):
                raise CodegenError(f"kernel {self.name}: a reduction inside an expression must be its own stage")
            return rebuild(x, go)
        try:
            return go(e)
        finally:
            del go      # the closure refers to itself: freed now, not by the cycle collector

    def inlined_body(self, t: Tensor) -> Expr:
        if t.uid not in self._inline_cache:
            self._inline_cache[t.uid] = t.body
        return self._inline_cache[t.uid]

    # ---- attachment analysis ------------------------------------------------------------

    def axis_map(self) -> dict:
        """For each attached stage, map each of its dims to a root axis (or None = size 1)."""
        maps: dict[int, list] = {}
        root_axes = set(self.root.axes)
        readers = [(self.root, self.expand(self.root.tensor.body))]
        readers += [(st, self.expand(_body_of(st.tensor))) for st in self.attached]
        pending = list(self.attached)
        # propagate from the root inwards: a stage read only by other attached stages is
        # mapped through their maps
        for _ in range(len(pending) + 1):
            for st in pending:
                if st.tensor.uid in maps:
                    continue
                m = None
                computed = []      # (dim, index) of loads at an index computed by the reader
                for reader, body in readers:
                    if reader is not self.root and reader.tensor.uid not in maps:
                        continue
                    for load in _loads(body, st.tensor):
                        cand = []
                        for d, i in enumerate(load.indices):
                            if isinstance(i, Const) and st.tensor.shape[d] == 1:
                                cand.append(None)
                            elif reader is self.root and i in root_axes:
                                cand.append(i)
                            elif reader is not self.root and i in reader.tensor.axes:
                                cand.append(maps[reader.tensor.uid][reader.tensor.axes.index(i)])
                            elif reader is not self.root and i in reader.reduce_axes:
                                cand.append(FULL)
                            elif reader is not self.root:
                                # e.g. a row reduction's partials or its tail: fine where another
                                # reader makes the whole dim part of the region
                                computed.append((d, i))
                                cand = None
                                break
                            else:
                                raise CodegenError(
                                    f"kernel {self.name}: {st.tensor.name} is read at a computed index "
                                    f"({i!r}) and cannot be attached")
                        if cand is None:
                            continue
                        if m is None:
                            m = cand
                        elif m != cand:
                            raise CodegenError(f"kernel {self.name}: {st.tensor.name} is read at two "
                                               "different index patterns and cannot be attached")
                for d, i in computed:
                    if m is not None and m[d] is not FULL:
                        raise CodegenError(f"kernel {self.name}: {st.tensor.name} is read at a computed index "
                                           f"({i!r}) and cannot be attached")
                if m is not None:
                    maps[st.tensor.uid] = m
        for st in self.attached:
            if st.tensor.uid not in maps:
                raise CodegenError(f"kernel {self.name}: cannot place stage {st.tensor.name}")
        return maps

    # ---- generation ---------------------------------------------------------------------

    def lower(self) -> PrimFunc:
        root = self.root
        if root.inlined:
            raise CodegenError(f"kernel {self.name}: the output stage {root.tensor.name} cannot be inlined")
        nest = loop_nest(root)
        self.nest = nest
        self.maps = self.axis_map()
        root_body = self.expand(root.tensor.body)
        # where each attached stage goes: the deepest leaf such that every leaf at or above it
        # feeds an axis the stage depends on (no recomputation), unless the schedule chose
        self.attach_pos: dict[int, int] = {}
        for st in self.attached:
            if not getattr(st, "default_attach", False) or st.attach_at is not None:
                if st.attach_at is not None and st.attach_at not in nest.leaves:
                    raise CodegenError(f"kernel {self.name}: stage {st.tensor.name} is attached at "
                                       f"{st.attach_at.name}, which is no longer a loop of the root "
                                       "(split or fused after compute_at)")
                pos = nest.leaves.index(st.attach_at) if st.attach_at is not None else -1
                if not self._box_at(st, pos):
                    raise CodegenError(f"kernel {self.name}: stage {st.tensor.name} cannot be attached at "
                                       f"{st.attach_at.name} (the region it would compute there is not a box)")
                self.attach_pos[st.tensor.uid] = pos
                continue
            deps = {a for a in self.maps[st.tensor.uid] if a is not None and a is not FULL}
            pos = -1
            for k, leaf in enumerate(nest.leaves):
                if root.kinds.get(leaf) == "vectorized" or not any(_axis_uses_leaf(nest, a, leaf) for a in deps):
                    break
                pos = k
            # further out until the region is a box (at the top it is the whole stage)
            while not self._box_at(st, pos):
                pos -= 1
            self.attach_pos[st.tensor.uid] = pos
        self._unify_reader_positions()
        self.out_buf = self.buffers[self.s.output.uid]
        body = self.gen_root(0, {}, {}, root_body)
        return PrimFunc(self.name, self.params, body)

    def _box_at(self, st: Stage, pos: int) -> bool:
        """Whether the region of ``st`` computed inside root leaf ``pos`` is a box: along each
        dim, one point, the whole axis, or a range swept by one loop with stride 1."""
        from ..tir.analysis import stride_in

        nest = self.nest
        inside = set(nest.leaves[pos + 1:])
        for axis in self.maps[st.tensor.uid]:
            if axis is None or axis is FULL:
                continue
            expr = nest.value[axis]
            used = [leaf for leaf in nest.leaves if _uses(expr, leaf)]
            inner = [leaf for leaf in used if leaf in inside]
            if not inner or len(inner) == len(used):
                continue
            if len(inner) > 1:
                return False
            st_ = stride_in(expr, inner[0])
            if st_ is None or st_[0] != 1:
                return False
        return True

    def _unify_reader_positions(self) -> None:
        """An attached stage that reads another reads it in its own region: both must sit at the
        same loop.  Default placements move out to agree; explicit ones must already agree."""
        changed = True
        while changed:
            changed = False
            for st in self.attached:
                body = self.expand(_body_of(st.tensor))
                for other in self.attached:
                    if other is st or not _loads(body, other.tensor):
                        continue
                    t = other.tensor
                    a, b = self.attach_pos[st.tensor.uid], self.attach_pos[t.uid]
                    if a == b or (a > b and not self._loops_feed(other, b, a)):
                        # (a reader further in sees the same region of ``other``: the loops
                        # between them do not move it)
                        continue
                    for x in (st, other):
                        if not (x.default_attach and x.attach_at is None) and self.attach_pos[x.tensor.uid] != min(a, b):
                            raise CodegenError(f"kernel {self.name}: stage {st.tensor.name} reads "
                                               f"{other.tensor.name}, so both must be attached at the same loop")
                    self.attach_pos[st.tensor.uid] = self.attach_pos[t.uid] = min(a, b)
                    changed = True

    def _loops_feed(self, st: Stage, lo: int, hi: int) -> bool:
        """Whether a root loop at positions lo+1 .. hi feeds an axis ``st``'s region follows."""
        leaves = self.nest.leaves[lo + 1:hi + 1]
        axes = [ax for ax in self.maps[st.tensor.uid] if ax is not None and ax is not FULL]
        return any(_axis_uses_leaf(self.nest, ax, leaf) for ax in axes for leaf in leaves)

    def gen_root(self, level: int, fixed: dict, ext_override: dict, root_body: Expr) -> Stmt:
        # attached stages placed just inside the loop of the level above
        here = [st for st in self.attached if self.attach_pos[st.tensor.uid] == level - 1]
        if here:
            return self.wrap_attached(here, level, fixed, ext_override,
                                      lambda: self._gen_root_loops(level, fixed, ext_override, root_body))
        return self._gen_root_loops(level, fixed, ext_override, root_body)

    def _gen_root_loops(self, level, fixed, ext_override, root_body) -> Stmt:
        nest = self.nest
        if level == len(nest.leaves):
            return self.root_store(fixed, root_body)
        leaf = nest.leaves[level]
        kind = self.root.kinds.get(leaf, "serial")
        extent = ext_override.get(leaf, nest.extents[leaf])
        if leaf in nest.tails and leaf not in ext_override:
            inner, main, rem, _ = nest.tails[leaf]
            main_loop = For(leaf, main, kind, self.gen_root(level + 1, fixed, ext_override, root_body))
            tail_fixed = dict(fixed)
            tail_fixed[leaf] = as_expr(main)
            tail_over = dict(ext_override)
            tail_over[leaf] = 1
            factor = nest.extents[inner]
            if not isinstance(rem, int) and self.root.kinds.get(inner) == "unrolled" and \
                    isinstance(factor, int) and factor <= MAX_TAIL_CASES + 1:
                # a register tile's tail of symbolic size: one unrolled copy per possible size,
                # so the tail's accumulators stay in registers as the whole tiles' do
                tail = None
                for r in range(factor - 1, 0, -1):
                    tail = IfThenElse(binop("eq", rem, Const(r)),
                                      self.gen_root(level + 1, tail_fixed, {**tail_over, inner: r}, root_body),
                                      tail)
            else:
                tail_over[inner] = rem
                tail = self.gen_root(level + 1, tail_fixed, tail_over, root_body)
            return Seq.of([main_loop if not isinstance(main, int) or main > 0 else None, tail])
        if leaf in fixed:
            return self.gen_root(level + 1, fixed, ext_override, root_body)
        return For(leaf, extent, kind, self.gen_root(level + 1, fixed, ext_override, root_body))

    def leaf_value(self, fixed: dict):
        return {leaf: fixed.get(leaf, leaf) for leaf in self.nest.leaves}

    def axis_value(self, axis, fixed) -> Expr:
        return simplify_index(substitute(self.nest.value[axis], self.leaf_value(fixed)))

    def root_store(self, fixed: dict, root_body: Expr) -> Stmt:
        t = self.root.tensor
        vals = {a: self.axis_value(a, fixed) for a in self.root.axes}
        value = self.to_tir(root_body, vals, reader=self.root, fixed=fixed)
        idx = simplify_index(_flat(t.shape, [vals[a] for a in self.root.axes]))
        st: Stmt = Store(self.out_buf, idx, value)
        conds = [binop("lt", self.axis_value(axis, fixed), as_expr(extent)) for axis, extent in self.nest.guards]
        if conds:
            c = conds[0]
            for x in conds[1:]:
                c = binop("and", c, x)
            st = IfThenElse(c, st)
        return st

    # ---- attached stages ----------------------------------------------------------------

    def region(self, st: Stage, level: int, fixed: dict, ext_override: dict):
        """Per dim of ``st``: (alloc extent, loop extent, outer part expr) for the region computed
        at loop ``level`` of the root."""
        nest = self.nest
        inside = set(nest.leaves[level:])
        dims = []
        for d, axis in enumerate(self.maps[st.tensor.uid]):
            if axis is None:
                dims.append((1, 1, Const(0)))
                continue
            if axis is FULL:
                n = extent_of(st.tensor.shape[d])
                dims.append((n, n, Const(0)))
                continue
            expr = nest.value[axis]
            used = [leaf for leaf in nest.leaves if _uses(expr, leaf)]
            inner = [leaf for leaf in used if leaf in inside and leaf not in fixed]
            if not inner:
                dims.append((1, 1, self.axis_value(axis, fixed)))
                continue
            outer_zero = dict(self.leaf_value(fixed))
            for leaf in inner:
                outer_zero[leaf] = Const(0)
            base = simplify_index(substitute(expr, outer_zero))
            if len(inner) == len(used):
                n = axis.extent
                dims.append((n, n, Const(0)))
            elif len(inner) == 1:
                leaf = inner[0]
                dims.append((nest.extents[leaf], ext_override.get(leaf, nest.extents[leaf]), base))
            else:
                raise CodegenError(f"kernel {self.name}: stage {st.tensor.name} cannot be attached here "
                                   "(its region is not a box)")
        return dims

    def local_coord(self, st: Stage, d: int, fixed: dict) -> Expr:
        """Coordinate inside ``st``'s local buffer of the root's current point, for dim d."""
        axis = self.maps[st.tensor.uid][d]
        if axis is None:
            return Const(0)
        if axis is FULL:
            raise CodegenError(f"kernel {self.name}: the root reads {st.tensor.name} outside its region")
        pos = self.attach_pos[st.tensor.uid]
        inside = set(self.nest.leaves[pos + 1:])
        expr = self.nest.value[axis]
        lv = self.leaf_value(fixed)
        outer_zero = {leaf: (Const(0) if leaf in inside and leaf not in fixed else lv[leaf]) for leaf in lv}
        full = substitute(expr, lv)
        base = substitute(expr, outer_zero)
        if all(not _uses(expr, leaf) or leaf in inside for leaf in self.nest.leaves):
            return simplify_index(full)
        return simplify_index(binop("sub", full, base))

    def wrap_attached(self, stages, level, fixed, ext_override, gen_inner) -> Stmt:
        # compute in dependency order (self.attached is topological), allocate around everything
        compute_stmts = []
        allocs = []
        for st in stages:
            dims = self.region(st, level, fixed, ext_override)
            size = 1
            for a, _, _ in dims:
                size *= a
            t = st.tensor
            if isinstance(t.body, ArgReduce):
                vbuf = Buffer(f"{t.name}_best", t.body.body.dtype, size, "local")
                ibuf = Buffer(f"{t.name}_idx", "int64", size, "local")
                self.local[t.uid] = (ibuf, dims, vbuf)
                allocs += [vbuf, ibuf]
            else:
                # half-precision reductions accumulate in float32, as the references do
                half = t.dtype in ("float16", "bfloat16")
                buf = Buffer(f"{t.name}_acc", "float32" if half else t.dtype, size, "local")
                self.local[t.uid] = (buf, dims, None)
                allocs.append(buf)
            self.local_order[t.uid] = _loop_order_of_axes(st)
            compute_stmts.append(self.gen_attached(st, dims, fixed))
        body: Stmt = Seq.of(compute_stmts + [gen_inner()])
        for buf in reversed(allocs):
            body = Allocate(buf, body)
        return body

    def local_index(self, uid: int, coords) -> Expr:
        """Flat index into a stage's local buffer, whose dims are laid out in the order of the
        stage's loops, so the innermost (vectorized) loop walks contiguous elements."""
        _, dims, _ = self.local[uid]
        order = self.local_order[uid]
        return simplify_index(_flat([dims[d][0] for d in order], [coords[d] for d in order]))

    def gen_attached(self, st: Stage, dims, fixed) -> Stmt:
        t = st.tensor
        buf, _, vbuf = self.local[t.uid]
        extent_of = {ax: loop_ext for ax, (_, loop_ext, _) in zip(t.axes, dims)}
        nest = loop_nest(st, extent_of)
        local_idx = self.local_index(t.uid, [nest.value[ax] for ax in t.axes])
        # global coordinates of the stage's axes: region base + local coordinate
        gvals = {ax: simplify_index(binop("add", base, nest.value[ax])) for ax, (_, _, base) in zip(t.axes, dims)}
        red_vals = {r: nest.value[r] for r in st.reduce_axes}
        body_expr = _body_of(t)
        value = self.to_tir(self.expand(body_expr), {**gvals, **red_vals}, reader=st, fixed=fixed,
                            local_vals={ax: nest.value[ax] for ax in t.axes})
        if isinstance(t.body, ArgReduce):
            better = t.body.better
            best = Load(vbuf, local_idx)
            cond = binop(better, value, best)
            if is_float_dtype(vbuf.dtype):
                # NaN beats every number, as in numpy's argmax and argmin: the first NaN wins,
                # or the last one when ties go to the last index
                nan = binop("ne", value, value)
                if better in ("gt", "lt"):
                    nan = binop("and", nan, binop("eq", best, best))
                cond = binop("or", cond, nan)
            upd = IfThenElse(cond, Seq([Store(vbuf, local_idx, value),
                                        Store(buf, local_idx, simplify_index(red_vals[t.body.axis]))]))
            init_v = min_value(vbuf.dtype) if better in ("gt", "ge") else max_value(vbuf.dtype)
            init = Seq([Store(vbuf, local_idx, init_v), Store(buf, local_idx, Const(0, "int64"))])
            update: Stmt = upd
        elif isinstance(t.body, Reduce):
            comb = t.body.combiner
            init = Store(buf, local_idx, identity_of(comb, buf.dtype))
            update = Store(buf, local_idx, combine(comb, Load(buf, local_idx), value))
        else:
            # an elementwise stage computed at a loop of the root: one store per element
            init = None
            update = Store(buf, local_idx, value)
        # a stage whose innermost loops split a spatial axis unevenly (a row of 197 in vectors of
        # 8; in a reduction too: the row of attention logits, one vector of keys at a time) gets
        # a tail copy instead of a bounds check, so that its main loop still vectorizes; other
        # uneven splits of the stage's own loops and root loops that run past the end of an axis
        # (guarded root splits) get bounds checks
        tail_copy = None
        if isinstance(update, Store) and len(nest.tails) == 1 and not nest.guards and not self.nest.guards:
            outer, (inner, main, rem, parent) = next(iter(nest.tails.items()))
            if nest.leaves[-2:] == [outer, inner] and isinstance(main, int) and isinstance(rem, int) \
                    and (init is None or not _uses_reduce(st, nest, parent)):
                tail_copy = (outer, inner, main, rem)
        conds_spatial, conds_all = [], []
        for outer, (inner, main, rem, parent) in nest.tails.items():
            if tail_copy is not None:
                break
            guard = (parent, nest.extents[parent])
            (conds_all if _uses_reduce(st, nest, parent) else conds_spatial).append(guard)
        for parent, ext in nest.guards:
            (conds_all if _uses_reduce(st, nest, parent) else conds_spatial).append((parent, ext))
        checks_s = [binop("lt", simplify_index(nest.value[p]), as_expr(e)) for p, e in conds_spatial]
        if self.nest.guards:
            # the root's guarded loops run past the end of an axis: so would this region
            ranges = {leaf: (0, upper_bound(e) - 1) for leaf, e in self.nest.extents.items()
                      if upper_bound(e) is not None}
            ranges.update({leaf: (0, upper_bound(e) - 1) for leaf, e in nest.extents.items()
                           if upper_bound(e) is not None})
            for d, ax in enumerate(t.axes):
                b = bound(gvals[ax], ranges)
                dim = t.shape[d]
                if b is None or b[0] < 0 or not isinstance(dim, int) or b[1] >= dim:
                    checks_s.append(binop("lt", gvals[ax], as_expr(dim)))
        checks_a = checks_s + [binop("lt", simplify_index(nest.value[p]), as_expr(e)) for p, e in conds_all]
        update = _guarded(update, checks_a)
        # init loops: over the spatial leaves only, in the stage's order
        spatial_leaves = [lf for lf in nest.leaves if not _is_reduce_leaf(st, nest, lf)]
        if tail_copy is not None:             # (no checks: a tail copy excludes every guard)
            outer, inner, main, rem = tail_copy
            at = {outer: Const(main)}

            def main_and_tail(store: Store, leaves) -> Stmt:
                last = Store(store.buffer, simplify_index(substitute(store.index, at)), substitute(store.value, at))
                return Seq.of([self._nest_loops(st, nest, leaves, store, {outer: main}),
                               self._nest_loops(st, nest, leaves[:-2], For(inner, rem, "serial", last))])

            return Seq.of([None if init is None else main_and_tail(init, spatial_leaves),
                           main_and_tail(update, nest.leaves)])
        init_stmt = None if init is None else self._nest_loops(st, nest, spatial_leaves, _guarded(init, checks_s))
        main_stmt = self._nest_loops(st, nest, nest.leaves, update)
        return Seq.of([init_stmt, main_stmt])

    def _nest_loops(self, st: Stage, nest: LoopNest, leaves, body: Stmt, extents: dict | None = None) -> Stmt:
        out = body
        for leaf in reversed(leaves):
            kind = st.kinds.get(leaf, "serial")
            if kind == "parallel":
                kind = "serial"      # an attached stage runs inside the root's loops
            out = For(leaf, (extents or {}).get(leaf, nest.extents[leaf]), kind, out)
        return out

    # ---- expressions --------------------------------------------------------------------

    def to_tir(self, e: Expr, vals: dict, reader: Stage, fixed: dict, local_vals: dict | None = None) -> Expr:
        """Turn a te expression into a loop-IR expression at the current point.  Subexpressions
        shared by several parents are converted once and stay shared."""
        memo: dict[int, Expr] = {}

        def go(x: Expr) -> Expr:
            got = memo.get(id(x))
            if got is None:
                got = memo[id(x)] = convert(x)
            return got

        def convert(x: Expr) -> Expr:
            if isinstance(x, TensorLoad):
                t = x.tensor
                if t.uid in self.buffers and t.is_placeholder:
                    idx = [simplify_index(go(i)) for i in x.indices]
                    return Load(self.buffers[t.uid], simplify_index(_flat(t.shape, idx)))
                st = self.s.stages.get(t.uid)
                if st is not None and st.attached:
                    buf, dims, _ = self.local[t.uid]
                    coords = []
                    for d, i in enumerate(x.indices):
                        if reader is self.root:
                            coords.append(self.local_coord(st, d, fixed))
                        else:
                            # same region: the reader's own local coordinate of the mapped axis
                            axis = self.maps[st.tensor.uid][d]
                            if axis is None:
                                coords.append(Const(0))
                            elif axis is FULL:
                                coords.append(simplify_index(go(i)))
                            elif axis in self.maps[reader.tensor.uid]:
                                rd = self.maps[reader.tensor.uid].index(axis)
                                coords.append(local_vals[reader.tensor.axes[rd]])
                            else:
                                # the reader indexes this dim by an expression of its own (a
                                # row reduction's partials): the global index less the region's base
                                coords.append(simplify_index(binop("sub", go(i), as_expr(dims[d][2]))))
                    load = Load(buf, self.local_index(t.uid, coords))
                    if buf.dtype != t.dtype and not _combines_partials(t, reader):
                        # a half-precision value kept in float32 (a reduction's accumulator, an
                        # attached stage): rounded to its dtype where another op reads it, as
                        # the reference rounds every op's result (a reduction combining its own
                        # partials reads them unrounded)
                        return Cast(t.dtype, load)
                    return load
                raise CodegenError(f"kernel {self.name}: tensor {t.name} is not available here")
            if isinstance(x, Var) and x in vals:
                return vals[x]
            return rebuild(x, go)
        try:
            return go(e)
        finally:
            del go, convert    # (cycles through the closures otherwise)


def _loop_order_of_axes(st: Stage) -> list[int]:
    """Dims of a stage sorted by where their innermost loops sit in the stage's loop order (a dim
    split around other loops, like the keys of a register tile of attention logits, is laid out
    by its inner part, so its vector loop walks contiguous elements)."""
    nest = loop_nest(st)
    pos = []
    for d, ax in enumerate(st.tensor.axes):
        p = max((k for k, leaf in enumerate(nest.leaves) if _uses(nest.value[ax], leaf)), default=-1)
        pos.append((p, d))
    return [d for _, d in sorted(pos)]


def _combines_partials(t: Tensor, reader: Stage) -> bool:
    """Whether ``reader`` is a reduction of the same combiner as the reduction ``t``: the combine
    of a row reduction's partial results."""
    rb = reader.tensor.body
    return isinstance(t.body, Reduce) and isinstance(rb, Reduce) and rb.combiner == t.body.combiner


def _body_of(t: Tensor) -> Expr:
    b = t.body
    if isinstance(b, (Reduce, ArgReduce)):
        return b.body
    return b


def _loads(e: Expr, t: Tensor):
    from .tensor import walk

    return [x for x in walk(e) if isinstance(x, TensorLoad) and x.tensor is t]


def _uses(e: Expr, v: Var) -> bool:
    from ..tir.analysis import uses_var

    return uses_var(e, v)


def _axis_uses_leaf(nest: LoopNest, axis, leaf) -> bool:
    return _uses(nest.value[axis], leaf)


def _uses_reduce(st: Stage, nest: LoopNest, var) -> bool:
    """Whether the loop variable or split/fuse intermediate ``var`` depends on a reduce axis."""
    v = nest.value.get(var, var)
    return any(_uses(v, leaf) for leaf in nest.leaves if _is_reduce_leaf(st, nest, leaf))


def _guarded(s: Stmt, conds: list) -> Stmt:
    if not conds:
        return s
    c = conds[0]
    for x in conds[1:]:
        c = binop("and", c, x)
    return IfThenElse(c, s)


def _is_reduce_leaf(st: Stage, nest: LoopNest, leaf) -> bool:
    return any(_uses(nest.value[r], leaf) for r in st.reduce_axes)


def _size(shape):
    """Elements of a tensor of ``shape``: an int, or an expression of size variables."""
    if all(isinstance(d, int) for d in shape):
        n = 1
        for d in shape:
            n *= int(d)
        return n
    return simplify_index(sym_expr(product(shape)))


def lower(sched: Schedule, name: str, params: list[Tensor]) -> PrimFunc:
    """Lower ``sched`` to a kernel taking ``params`` (inputs, then the output) as flat buffers."""
    return Lowering(sched, name, params).lower()
