"""The verifier: checks that a graph is well formed, naming the node at fault.

Every pass runs it on its result (``ember.passes.optimize``), so a pass that breaks the IR is
caught at the pass, not three layers later in generated code.
"""

from __future__ import annotations

import numpy as np

from .. import limits
from ..errors import EmberError, GraphError, LimitError
from .ir import Graph, Node, Value
from .types import np_dtype


def _fail(message: str, node: Node | None = None) -> GraphError:
    if node is None:
        return GraphError(message)
    return GraphError(message, node=node.name, op=node.op)


def _check_const(v: Value, graph: Graph) -> None:
    arr = v.const
    if not isinstance(arr, np.ndarray):
        raise _fail(f"constant %{v.name} of graph '{graph.name}' holds a {type(arr).__name__}, not a numpy array")
    if not v.type.is_static or tuple(arr.shape) != v.type.shape:
        raise _fail(f"constant %{v.name} has type {v.type} but its array has shape {list(arr.shape)}")
    if arr.dtype.newbyteorder("=") != np_dtype(v.dtype):
        raise _fail(f"constant %{v.name} has type {v.type} but its array has dtype {arr.dtype}")


def verify(graph: Graph) -> None:
    """Raise :class:`ember.errors.GraphError` at the first malformation of ``graph``.

    Checks: every value is defined (graph input, constant or node output) before it is used
    and exactly once; value names and node names are unique; each node's op exists, its
    attributes are exactly the op's, its arity matches and its output types are what the op's
    type rule gives; producer links agree with the node lists; constants match their types;
    the graph outputs are defined; every symbol a ``bind_dims`` node binds from data is bound
    once, is no input's, and every node whose types or attributes mention it reads (through
    other nodes) that node's output.
    """
    from ..ops import OPS

    limits.check_count("nodes", len(graph.nodes), f"the number of nodes of graph '{graph.name}'")
    defined: set[Value] = set()
    names: dict[str, Value] = {}
    # type rules are pure: nodes of one op, attributes and operand types (a model's repeated
    # layers, a long chain) are inferred once
    inferred: dict[tuple, list] = {}

    def name_value(v: Value, node: Node | None) -> None:
        other = names.get(v.name)
        if other is not None and other is not v:
            raise _fail(f"two different values are named %{v.name}; names must be unique within a graph", node)
        names[v.name] = v

    for v in graph.inputs:
        if v in defined:
            raise _fail(f"graph input %{v.name} is listed twice")
        if v.producer is not None:
            raise _fail(f"graph input %{v.name} claims to be produced by node '{v.producer.name}'")
        if v.is_const:
            raise _fail(f"graph input %{v.name} is a constant")
        name_value(v, None)
        defined.add(v)

    node_names: set[str] = set()
    for n in graph.nodes:
        if n.name in node_names:
            raise _fail(f"node name '{n.name}' is used by more than one node", n)
        node_names.add(n.name)
        opdef = OPS.get(n.op)
        if opdef is None:
            raise _fail(f"unknown op '{n.op}'", n)
        for v in n.inputs:
            if v.is_const:
                if v.producer is not None:
                    raise _fail(f"constant %{v.name} claims to be produced by node '{v.producer.name}'", n)
                if v not in defined:
                    _check_const(v, graph)
                    name_value(v, n)
                    defined.add(v)
            elif v not in defined:
                later = v.producer is not None and any(v in m.outputs for m in graph.nodes)
                if later:
                    raise _fail(f"uses %{v.name} before it is defined (by node '{v.producer.name}')", n)
                raise _fail(f"uses %{v.name}, which is not defined in graph '{graph.name}' "
                            "(not an input, a constant or an output of a node)", n)
        missing = [k for k in opdef.attrs if k not in n.attrs]
        unknown = [k for k in n.attrs if k not in opdef.attrs]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing attribute(s) {missing}")
            if unknown:
                parts.append(f"unknown attribute(s) {unknown}")
            raise _fail(f"{' and '.join(parts)}; {n.op} takes {sorted(opdef.attrs)}", n)
        if opdef.region:
            # a region's bodies are graphs of their own (their outer values come in as operands)
            try:
                for body in opdef.bodies(n.attrs):
                    if not isinstance(body, Graph):
                        raise _fail(f"a body of {n.op} is a {type(body).__name__}, not a graph", n)
                    verify(body)
                want = opdef.output_count(n.attrs)
            except LimitError:
                raise
            except GraphError as e:
                raise _fail(f"in its body: {str(e).split('] ', 1)[-1]}", n) from None
        else:
            want = opdef.num_outputs
        if len(n.outputs) != want:
            raise _fail(f"has {len(n.outputs)} output(s), {n.op} produces {want}", n)
        in_types = [v.type for v in n.inputs]
        try:
            key = (n.op, tuple(n.attrs.items()), tuple(in_types))
            types = inferred.get(key)
        except TypeError:           # an attribute that cannot be hashed: infer it every time
            key = types = None
        try:
            if types is None:
                types = opdef.infer_types(n.attrs, in_types, n.name)
                if key is not None:
                    inferred[key] = types
        except LimitError:
            raise
        except EmberError as e:
            raise _fail(f"type rule fails: {str(e).split('] ', 1)[-1]}", n) from None
        except Exception as e:  # a type rule that crashes on bad attributes is still a bad node
            raise _fail(f"type rule fails: {type(e).__name__}: {e}", n) from None
        for k, (o, t) in enumerate(zip(n.outputs, types)):
            if o in defined:
                raise _fail(f"defines %{o.name} a second time (SSA values are defined once)", n)
            if o.producer is not n:
                who = "no producer" if o.producer is None else f"producer '{o.producer.name}'"
                raise _fail(f"output %{o.name} has {who}, not this node", n)
            if o.is_const:
                raise _fail(f"output %{o.name} is a constant", n)
            if o.type != t:
                raise _fail(f"output {k} (%{o.name}) has type {o.type} but the type rule gives {t}", n)
            name_value(o, n)
            defined.add(o)

    _check_data_symbols(graph)

    for v in graph.outputs:
        if v.is_const:
            if v not in defined:
                _check_const(v, graph)
                name_value(v, None)
                defined.add(v)
        elif v not in defined:
            raise _fail(f"graph output %{v.name} of graph '{graph.name}' is not defined")


def _symbols_in(x) -> set[str]:
    from ..symbolic import Sym

    if isinstance(x, Sym):
        return x.symbols()
    if isinstance(x, tuple):
        out: set[str] = set()
        for y in x:
            out |= _symbols_in(y)
        return out
    return set()


def _check_data_symbols(graph: Graph) -> None:
    """The symbols ``bind_dims`` nodes bind from data: each bound by one node, none an input's,
    and used only by nodes that depend on the node binding it (so they run after it)."""
    binder: dict[str, Node] = {}
    for n in graph.nodes:
        if n.op == "bind_dims":
            for s in n.attrs.get("symbols", ()):
                if s in binder:
                    raise _fail(f"binds symbol '{s}', which node '{binder[s].name}' binds already", n)
                binder[s] = n
    if not binder:
        return
    inputs = {s for v in graph.inputs for s in v.type.symbols}
    clash = sorted(inputs & set(binder))
    if clash:
        raise _fail(f"binds symbol(s) {clash} from data, but the graph's input shapes give them", binder[clash[0]])
    empty: frozenset = frozenset()
    known: dict[Value, frozenset] = {}      # the data symbols bound before each value
    for n in graph.nodes:
        have = empty
        for v in n.inputs:
            have = have | known.get(v, empty)
        used = set(_symbols_in(tuple(n.attrs.values())))
        for o in n.outputs:
            used |= o.type.symbols
        missing = sorted((used & set(binder)) - have)
        if missing:
            raise _fail(f"uses data symbol(s) {missing} but does not depend on node "
                        f"'{binder[missing[0]].name}', which binds them", n)
        if n.op == "bind_dims":
            have = have | frozenset(n.attrs["symbols"])
        for o in n.outputs:
            known[o] = have
