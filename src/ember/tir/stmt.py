"""Statements of the loop IR: buffers, loops, stores, local allocations, kernel functions.

The loop IR is what every code generator consumes.  It is deliberately small: a kernel is a
:class:`PrimFunc` whose body is a tree of :class:`For`, :class:`Store`, :class:`Allocate`,
:class:`IfThenElse` and :class:`Seq` over flat buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .expr import Expr, Var


@dataclass(eq=False)
class Buffer:
    """A flat array: a kernel parameter ("global"), a scratch array of one thread ("local") or,
    in a GPU kernel, a scratch array shared by the threads of one block ("shared")."""

    name: str
    dtype: str
    size: int
    scope: str = "global"      # "global" | "local" | "shared"
    const: bool = False        # read-only in this kernel

    __hash__ = object.__hash__

    def __repr__(self):
        return f"{self.name}:{self.dtype}[{self.size}]"


class Stmt:
    pass


LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled")

#: loop kinds of a GPU kernel that bind the loop to a block or thread index of the launch: the
#: loop runs once per block (per thread) and its variable is that index
THREAD_KINDS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y", "threadIdx.z")


@dataclass(eq=False)
class For(Stmt):
    var: Var
    extent: int
    kind: str
    body: Stmt


@dataclass(eq=False)
class Store(Stmt):
    buffer: Buffer
    index: Expr
    value: Expr


@dataclass(eq=False)
class Allocate(Stmt):
    buffer: Buffer
    body: Stmt


@dataclass(eq=False)
class IfThenElse(Stmt):
    cond: Expr
    then: Stmt
    other: Stmt | None = None


@dataclass(eq=False)
class Barrier(Stmt):
    """In a GPU kernel: every thread of the block waits here until all have arrived, and their
    writes to shared memory before it are seen by every thread after it (``__syncthreads()``,
    ``barrier(CLK_LOCAL_MEM_FENCE)``).  Every thread of the block must reach the same barrier."""


@dataclass(eq=False)
class Seq(Stmt):
    stmts: list

    @staticmethod
    def of(stmts: Sequence[Stmt]) -> Stmt:
        flat: list[Stmt] = []
        for s in stmts:
            if s is None:
                continue
            if isinstance(s, Seq):
                flat.extend(s.stmts)
            else:
                flat.append(s)
        return flat[0] if len(flat) == 1 else Seq(flat)


@dataclass(eq=False)
class PrimFunc:
    """A kernel: named parameters and a body; ``comment`` says which graph nodes it computes."""

    name: str
    params: list[Buffer]
    body: Stmt
    comment: str = ""
    attrs: dict = field(default_factory=dict)


def walk_stmts(s: Stmt):
    """Every statement of the tree ``s``, in program order (parents before their bodies)."""
    yield s
    if isinstance(s, (For, Allocate)):
        yield from walk_stmts(s.body)
    elif isinstance(s, Seq):
        for x in s.stmts:
            yield from walk_stmts(x)
    elif isinstance(s, IfThenElse):
        yield from walk_stmts(s.then)
        if s.other is not None:
            yield from walk_stmts(s.other)
