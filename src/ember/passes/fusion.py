"""Operator fusion: partition the graph's nodes into groups that each become one kernel.

The op patterns (``ember.ops.Pattern``) decide:

* A group has one output (a region node, ``if`` or ``loop``, is a group of its own with all
  its outputs).  A value read by more than one node, or that is a graph output,
  ends its group: every other value of a group is read exactly once, inside the group (a group
  is a tree whose root is its output).
* A group holds at most one *anchor*: an ``OUT_ELEMWISE_FUSABLE`` op (conv2d, matmul) or a
  ``REDUCTION``.  ``OPAQUE`` ops are always alone.
* After an anchor, the chain of ``ELEMWISE``/``BROADCAST`` consumers is absorbed as long as
  each one's output has the anchor's output shape and reads the chain through an operand of
  that full shape; its other operands (bias, residual, ...) are read from outside the group.
* An anchor-free group of such elementwise ops of the anchor's output shape that holds *every*
  reader of a conv/matmul group's output joins that group, even though it reads the output more
  than once (GELU after a matmul): see ``_merge_epilogue_dags``.
* ``ELEMWISE``, ``BROADCAST`` and ``INJECTIVE`` ops with no anchor chain freely, any shapes,
  several producers at once.
* A group holds at most ``MAX_GROUP_NODES`` nodes; a longer chain is cut into several.
* The simple reductions (``reduce_sum/mean/max/min/prod``) absorb a tree of anchor-free
  producers that feed only them; conv2d, matmul, softmax, layer_norm and arg-reductions never
  absorb producers (their schedules read their raw inputs).

Groups are listed in a valid execution order: by the position of their output node in the
graph's topological order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import GraphError
from ..graph.ir import Graph, Node, Value
from ..ops import Pattern, get_op

SIMPLE_REDUCTIONS = frozenset({"reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"})
ANCHOR_PATTERNS = frozenset({Pattern.OUT_ELEMWISE_FUSABLE, Pattern.REDUCTION})
CHAIN_PATTERNS = frozenset({Pattern.ELEMWISE, Pattern.BROADCAST})
FREE_PATTERNS = frozenset({Pattern.ELEMWISE, Pattern.BROADCAST, Pattern.INJECTIVE})

#: The most nodes one group holds.  A longer chain becomes several kernels: a kernel's body is
#: one expression per element, nested as deep as the chain, and both lowering it and compiling
#: the C take time (and recursion) that grows with that depth; this also keeps fusion linear in
#: the number of nodes (joining two groups costs the size of the smaller one at most).
MAX_GROUP_NODES = 64

#: Kernel names are cut to about this many characters.
MAX_NAME = 60

_C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for
goto if inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while main""".split())


@dataclass(eq=False)
class Group:
    """A fused group of nodes: one kernel."""

    name: str              # C identifier made from the node names, unique within the graph
    nodes: list[Node]      # topological order
    anchor: Node | None    # the OUT_ELEMWISE_FUSABLE or REDUCTION node, if any
    inputs: list[Value]    # values read from outside the group, first-use order, no duplicates
    output: Value          # the group's one output value (a region's first)
    #: every value the group writes: its output, or all outputs of a region node (``if``,
    #: ``loop``) and the scratch buffer its bodies run in (see ``build.regions``)
    outputs: list[Value] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = [self.output]

    def __repr__(self) -> str:
        return f"Group({self.name!r}, {[n.op for n in self.nodes]})"


class _Draft:
    __slots__ = ("nodes", "anchor", "alone")

    def __init__(self, node: Node, anchor: Node | None, alone: bool):
        self.nodes = [node]
        self.anchor = anchor
        self.alone = alone


def _sanitize(part: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", part)
    s = re.sub(r"_+", "_", s).strip("_")
    return s


def _kernel_name(nodes: list[Node], anchor: Node | None, used: set[str]) -> str:
    parts = [_sanitize(n.name) or n.op for n in nodes]
    base = "__".join(parts)
    if len(base) > MAX_NAME:
        head = (_sanitize(anchor.name) or anchor.op) if anchor is not None else parts[0]
        base = f"{head}__{parts[-1]}" if head != parts[-1] else head
        base = base[:MAX_NAME].rstrip("_")
    if not base or base[0].isdigit():
        base = "k_" + base
    if base in _C_KEYWORDS:
        base += "_"
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name


def fuse(graph: Graph) -> list[Group]:
    """Partition ``graph.nodes`` into fused groups, listed in execution order."""
    users = graph.users()
    protected = set(graph.outputs)
    pos = {n: i for i, n in enumerate(graph.nodes)}
    draft_of: dict[Node, _Draft] = {}

    def absorb(into: _Draft, other: _Draft) -> None:
        into.nodes.extend(other.nodes)
        for m in other.nodes:
            draft_of[m] = into
        if other.anchor is not None:
            into.anchor = other.anchor

    for n in graph.nodes:
        if len(n.outputs) != 1 and not get_op(n.op).region:
            raise GraphError(f"fusion handles single-output ops only; this one has {len(n.outputs)}",
                             node=n.name, op=n.op)
        pattern = get_op(n.op).pattern
        d = _Draft(n, n if pattern in ANCHOR_PATTERNS else None, pattern not in ANCHOR_PATTERNS | FREE_PATTERNS)
        draft_of[n] = d
        if d.alone:
            continue
        # producer groups that may join: their output is read by n alone and is no graph output
        candidates: list[tuple[Value, _Draft]] = []
        for v in dict.fromkeys(n.inputs):
            p = v.producer
            if p is None or p not in pos or v in protected or users.get(v) != [n]:
                continue
            pd = draft_of[p]
            if pd.alone or pd.nodes[-1] is not p:
                continue
            candidates.append((v, pd))
        # joined while they fit, in operand order
        room = MAX_GROUP_NODES - 1
        fitting = []
        for v, pd in candidates:
            if len(pd.nodes) <= room:
                fitting.append((v, pd))
                room -= len(pd.nodes)
        candidates = fitting
        if d.anchor is not None:
            if n.op in SIMPLE_REDUCTIONS:
                for _, pd in candidates:
                    if pd.anchor is None:
                        absorb(d, pd)
        else:
            chain = None
            if pattern in CHAIN_PATTERNS:
                for v, pd in candidates:
                    if pd.anchor is not None:
                        full = pd.anchor.output.type.shape
                        if n.output.type.shape == full and v.type.shape == full:
                            chain = pd
                            break
            if chain is not None:
                absorb(d, chain)
            else:
                for _, pd in candidates:
                    if pd.anchor is None:
                        absorb(d, pd)
        d.nodes.append(d.nodes.pop(0))  # keep the root (this node) last

    _merge_epilogue_dags(graph, users, protected, draft_of, absorb)
    drafts = list({id(d): d for d in draft_of.values()}.values())
    drafts.sort(key=lambda d: pos[d.nodes[-1]])
    used: set[str] = set()
    groups = []
    for d in drafts:
        nodes = sorted(d.nodes, key=pos.__getitem__)
        inside = {o for m in nodes for o in m.outputs}
        inputs = list(dict.fromkeys(v for m in nodes for v in m.inputs if v not in inside))
        last = d.nodes[-1]
        if not last.outputs:
            continue        # a region without outputs computes nothing
        groups.append(Group(_kernel_name(nodes, d.anchor, used), nodes, d.anchor, inputs, last.outputs[0],
                            list(last.outputs)))
    return groups


def _merge_epilogue_dags(graph: Graph, users, protected, draft_of, absorb) -> None:
    """Join an anchored group to the anchor-free elementwise group that reads its output
    several times, as GELU's ``y * 0.5 * (1 + erf(y / sqrt 2))`` reads a matmul's ``y``.

    The chain rule above never sees such an epilogue: a value with several readers ends its
    group.  When *every* reader of the anchored group's output is in one anchor-free group
    whose nodes are all elementwise/broadcast ops producing the anchor's output shape, that
    group is an epilogue evaluated element by element on the anchor's tile, reading the tile
    as often as it likes, and the two become one kernel.
    """
    for n in graph.nodes:
        d = draft_of[n]
        if d.anchor is not None or d.alone or d.nodes[-1] is not n:
            continue
        full = n.output.type.shape
        if not all(get_op(m.op).pattern in CHAIN_PATTERNS and m.output.type.shape == full for m in d.nodes):
            continue
        members = set(d.nodes)
        for m in d.nodes:
            joined = False
            for v in m.inputs:
                p = v.producer
                if p is None or p not in draft_of or v in protected:
                    continue
                pd = draft_of[p]
                # only after a convolution or matmul, whose output is its accumulator tile; a
                # softmax's output is an expression (an exp) that each reader would recompute
                if pd is d or pd.anchor is None or pd.nodes[-1] is not p or pd.alone:
                    continue
                if get_op(pd.anchor.op).pattern != Pattern.OUT_ELEMWISE_FUSABLE:
                    continue
                if v.type.shape != full or pd.anchor.output.type.shape != full:
                    continue
                if len(users.get(v, [])) < 2 or not all(u in members for u in users[v]):
                    continue
                if len(pd.nodes) + len(d.nodes) > MAX_GROUP_NODES:
                    continue
                # the epilogue's root stays the group's root
                absorb(pd, d)
                pd.nodes.sort(key=lambda x: x is n)
                joined = True
                break
            if joined:
                break


def describe(groups: list[Group]) -> str:
    """One line per group: its kernel name, its ops in order, its anchor."""
    lines = []
    for k, g in enumerate(groups):
        anchor = f"  [anchor {g.anchor.op} '{g.anchor.name}']" if g.anchor is not None else ""
        lines.append(f"{k:4d} {g.name}: {', '.join(n.op for n in g.nodes)}{anchor}")
    return "\n".join(lines) + ("\n" if lines else "")
