"""The graph IR: typed SSA values, nodes of core ops, graphs; text form, verifier, interpreter."""

from .types import Dim, TensorType, DTYPES, broadcast_shapes
from .ir import Graph, Node, Value, constant
from .builder import GraphBuilder
from .interpreter import run_graph

__all__ = ["Dim", "TensorType", "DTYPES", "broadcast_shapes", "Graph", "Node", "Value", "constant",
           "GraphBuilder", "run_graph"]
