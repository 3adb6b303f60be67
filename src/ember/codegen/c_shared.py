"""The subexpressions of a statement that the C generator writes once, as named temporaries.

A loop-IR expression is a DAG: requantization (TFLite's fixed-point steps), unrolled transforms
and other rewrites share subexpressions, and structurally equal ones may be separate objects.
Written out as a tree, a part used twice is written twice, and the text grows exponentially
with the nesting.  :class:`SharedPlan` numbers the nodes of one statement by structure (equal
nodes one number, in time linear in the DAG), counts the uses of each, and decides which ones
the generator declares as ``const __auto_type tN = ...;`` (the C type of the text it stands
for, so nothing converts) and refers to by name.

C evaluates some parts of an expression only under a condition: the branches of ``?:`` (a
scalar select, a vector select with one condition for every lane) and the right operand of
``&&`` and ``||``.  The branches of a lane-wise vector select are computed for every lane, their
loads bounds-checked (``guard``).  Each such part is a *region*, nested in the one around it; the
statement itself is the root region.  A node is *safe* when computing it anywhere can neither
fault nor have an effect: no load that may leave its buffer, no run-time index check, no float
to integer conversion (undefined in C out of range, which a condition may rule out).  Then:

* a safe node used twice or more in the statement is declared before the statement;
* any other node is declared at the start of the outermost region that uses it, when that region
  and the regions inside it use it twice or more (it is visible in those): a region other than
  the root becomes a GNU statement expression ``({ const __auto_type t3 = ...; value; })``.  A
  node used only in sibling regions (the two branches of one select) is written in each.

Cheap nodes (variables, constants, a load at a variable index, one operation on variables and
constants) are written at every use, as before.  Declarations are made when first printed
(children before parents), so a temporary exists only where the text uses it.
"""

from __future__ import annotations

from collections import deque

from ..tir.expr import (BinOp, Broadcast, Call, Cast, Const, Expr, IndexCheck, Load, Not, Ramp, Select, Shuffle, Var,
                        is_float_dtype)
from ..tir.intrinsics import DOT_CALLS
from ..tir.transform import lanes_of

_LEAVES = (Var, Const)       # SizeVar is a Var


class Region:
    """A part of a statement that C evaluates as a unit (see the module's text)."""

    __slots__ = ("parent", "guard", "ids", "kids", "items", "defs", "defined")

    def __init__(self, parent: "Region | None", guard: bool):
        self.parent = parent
        self.guard = guard
        self.ids = frozenset((id(self),)) | (parent.ids if parent is not None else frozenset())
        self.kids: dict = {}       # (node number, branch) -> Region
        self.items: list = []      # expressions the region evaluates (while counting)
        self.defs: list[str] = []  # declarations printed, not yet written out
        self.defined: list = []    # numbers declared in the text being printed

    def child(self, key, guard: bool) -> "Region":
        r = self.kids.get(key)
        if r is None:
            r = self.kids[key] = Region(self, guard)
        return r


class SharedPlan:
    """Which nodes of the expressions ``roots`` of one statement get a name, and where.

    ``load_safe(load)`` tells whether a load stays inside its buffer wherever it is computed.
    The generator calls :meth:`name_of` on every node it prints, :meth:`enter` / :meth:`leave`
    around a conditional part, and writes :attr:`root`'s ``defs`` before the statement."""

    def __init__(self, roots: list[Expr], load_safe, new_name):
        self._load_safe = load_safe
        self._new_name = new_name
        self._numbers: dict[int, int] = {}     # id(node) -> number
        self._table: dict = {}                 # structural key -> number
        self._safe: list[bool] = []
        self._cheap: list[bool] = []
        self._keep: list[Expr] = []            # one node per number
        self.root = Region(None, False)
        self.region = self.root
        self._homes: dict[int, dict] = {}      # number -> {region: name or None}
        self._skip = -1                        # the number being declared (printed, not named)
        self._count(roots)

    # ---- numbering ---------------------------------------------------------------------

    def number(self, e: Expr) -> int:
        got = self._numbers.get(id(e))
        if got is None:
            got = self._numbers[id(e)] = self._number(e)
        return got

    def _number(self, e: Expr) -> int:
        t = type(e)
        kids: tuple = ()
        if isinstance(e, Var):
            key = ("v", id(e))
        elif t is Const:
            v = e.value
            key = ("c", e.dtype, repr(v) if isinstance(v, float) else v)
        elif t is BinOp:
            kids = (e.a, e.b)
            key = ("b", e.op, e.dtype, self.number(e.a), self.number(e.b))
        elif t is Load:
            kids = (e.index,)
            key = ("ld", id(e.buffer), e.lanes, self.number(e.index))
        elif t is Cast:
            kids = (e.a,)
            key = ("cast", e.dtype, e.saturate, e.round_mode, self.number(e.a))
        elif t is Not:
            kids = (e.a,)
            key = ("not", self.number(e.a))
        elif t is Select:
            kids = (e.cond, e.t, e.f)
            key = ("sel",) + tuple(self.number(x) for x in kids)
        elif t is Call:
            kids = tuple(e.args)
            key = ("call", e.fn, e.dtype) + tuple(self.number(x) for x in kids)
        elif t is IndexCheck:
            kids = (e.index, e.extent)
            key = ("chk", e.what, e.node, e.op, self.number(e.index), self.number(e.extent))
        elif t is Ramp:
            kids = (e.base,)
            key = ("ramp", e.stride, e.lanes, self.number(e.base))
        elif t is Broadcast:
            kids = (e.value,)
            key = ("bc", e.lanes, self.number(e.value))
        elif t is Shuffle:
            kids = (e.a, e.b)
            key = ("shuf", e.indices, self.number(e.a), self.number(e.b))
        else:
            key = ("obj", id(e))
        n = self._table.get(key)
        if n is None:
            n = self._table[key] = len(self._keep)
            self._keep.append(e)
            own = not (t is IndexCheck or (t is Load and not self._load_safe(e)) or
                       (t is Cast and is_float_dtype(e.a.dtype) and not is_float_dtype(e.dtype)))
            self._safe.append(own and all(self._safe[self.number(x)] for x in kids))
            self._cheap.append(_leafish(e) or (t in (Load, BinOp, Cast, Not) and all(_leafish(x) for x in kids)))
        return n

    # ---- counting ----------------------------------------------------------------------

    def _count(self, roots: list[Expr]) -> None:
        """Count the uses of every node by region (regions in breadth-first order, so a node
        an enclosing region computes is known there before an inner region meets it), then
        choose the homes of the names."""
        refs: dict[int, dict] = {}         # number -> {region: uses}
        walked: dict[int, list] = {}       # number -> regions whose text holds its children
        self.root.items = list(roots)
        queue = deque([self.root])
        while queue:
            region = queue.popleft()
            stack = list(reversed(region.items))
            region.items = []
            while stack:
                e = stack.pop()
                t = type(e)
                if t is Ramp:                  # never named: its base is written at each use
                    stack.append(e.base)
                    continue
                if t is Broadcast:
                    stack.append(e.value)
                    continue
                if isinstance(e, _LEAVES):
                    continue
                n = self.number(e)
                safe = self._safe[n]
                home = self.root if safe else region
                uses = refs.setdefault(n, {})
                uses[home] = uses.get(home, 0) + 1
                seen = walked.setdefault(n, [])
                if any(id(r) in region.ids for r in seen) or (safe and seen):
                    continue
                seen.append(home)
                for kid, branch, guard in self._children(e, n, region.guard):
                    if branch is None or safe:
                        stack.append(kid)
                    else:
                        inner = region.child((n, branch), guard)
                        if not inner.items:
                            queue.append(inner)
                        inner.items.append(kid)
        for n, uses in refs.items():
            if self._cheap[n]:
                continue
            groups: dict = {}
            for r, k in uses.items():
                top = r
                p = r.parent
                while p is not None:
                    if p in uses:
                        top = p
                    p = p.parent
                groups[top] = groups.get(top, 0) + k
            homes = {r: None for r, k in groups.items() if k >= 2}
            if homes:
                self._homes[n] = homes

    @staticmethod
    def _children(e: Expr, n: int, guard: bool):
        """The operands of ``e`` as the C generator writes them: (operand, branch, guard), the
        branch None for an operand always computed, else a number for the region it is in."""
        vector = lanes_of(e) > 1
        t = type(e)
        if t is Select:
            if vector and not isinstance(e.cond, Broadcast):   # lane-wise: both computed, guarded
                return [(e.cond, None, guard), (e.t, 0, True), (e.f, 1, True)]
            return [(e.cond, None, guard), (e.t, 0, guard), (e.f, 1, guard)]
        if t is BinOp:
            if not vector and e.op in ("and", "or"):
                return [(e.a, None, guard), (e.b, 1, guard)]
            return [(e.a, None, guard), (e.b, None, guard)]
        if t is Call:
            args = e.args
            if vector and e.fn in DOT_CALLS:       # operand loads are written by the dot product
                return [(a.index if isinstance(a, Load) else a, None, guard) for a in args]
            if e.fn == "abs" and not is_float_dtype(args[0].dtype):
                return [(args[0], None, guard)] * 2     # written twice: (x < 0 ? -x : x)
            if e.fn == "pow" and args[0].dtype == "bool":
                return [(args[0], None, guard), (args[1], 1, guard)]    # a || !b
            return [(a, None, guard) for a in args]
        if t is Load:
            return [(e.index, None, guard)]
        if t is IndexCheck:
            return [(e.index, None, guard), (e.extent, None, guard)]
        if t is Cast or t is Not:
            return [(e.a, None, guard)]
        if t is Shuffle:
            return [(e.a, None, guard), (e.b, None, guard)]
        return []

    # ---- printing ----------------------------------------------------------------------

    def name_of(self, e: Expr, declare) -> str | None:
        """The name ``e`` is written as in the current region, or None to write it out;
        the first use declares it (``declare(e, guard)`` gives its text) in its region."""
        n = self._numbers.get(id(e))
        if n is None:
            return None
        if n == self._skip:
            self._skip = -1
            return None
        homes = self._homes.get(n)
        if homes is None:
            return None
        ids = self.region.ids
        for r, name in homes.items():
            if id(r) not in ids:
                continue
            if n not in r.defined:
                outer, self.region, self._skip = self.region, r, n
                try:
                    text = declare(e, r.guard)
                finally:
                    self.region = outer
                if name is None:
                    name = homes[r] = self._new_name()
                r.defs.append(f"const __auto_type {name} = {text};")
                r.defined.append(n)
            return name
        return None

    def enter(self, e: Expr, branch: int, guard: bool) -> Region:
        """Make the region of ``e``'s operand ``branch`` current; returns the one it was in."""
        outer = self.region
        self.region = outer.child((self.number(e), branch), guard)
        return outer

    def leave(self, outer: Region, text: str) -> str:
        """Back to ``outer`` from the current region, whose printed ``text`` gets the region's
        declarations in front (a statement expression) when it has any."""
        r = self.region
        self.region = outer
        if not r.defs:
            return text
        out = "({ " + " ".join(r.defs) + f" {text}; }})"
        r.defs, r.defined = [], []           # printed again (an unnamed parent), declared again
        return out


def _leafish(e: Expr) -> bool:
    while type(e) in (Ramp, Broadcast):
        e = e.base if type(e) is Ramp else e.value
    return isinstance(e, _LEAVES)
