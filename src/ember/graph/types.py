"""Tensor types of the graph IR: a shape of ints or named symbols, and a dtype.

Dtypes are spelled as numpy spells them ("float32", "int64", "bool", ...), so a constant's
dtype is simply ``str(array.dtype)``; the one exception is ``"string"``, whose values are numpy
object arrays of Python ``str`` (see :data:`STRING`).  A dimension is an ``int`` when it is known at compile
time and a ``str`` (a symbol such as ``"batch"``) when it is only known at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from ..errors import ShapeError
from ..symbolic import Sym, SymbolicError, as_dim, dim_range, evaluate, product

Dim = Union[int, Sym]

#: Every dtype the IR knows, with the short name used by the text form.
DTYPES = (
    "float16", "bfloat16", "float32", "float64",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "bool",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn", "int4", "uint4", "int2", "uint2",
    "string",
)

FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})

#: The narrow types: stored one element per byte (as ``ml_dtypes`` holds them in numpy; an int4
#: is the low nibble of its byte, two's complement, the high nibble zero), and only converted
#: (``cast``) or moved (reshape, transpose, gather, ...): no arithmetic, no comparison.
NARROW_FLOAT_DTYPES = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                                 "float8_e8m0fnu", "float4_e2m1fn"})
NARROW_INT_DTYPES = frozenset({"int4", "uint4", "int2", "uint2"})
NARROW_DTYPES = NARROW_FLOAT_DTYPES | NARROW_INT_DTYPES

#: Text: numpy object arrays whose elements are Python ``str``.  String values have no
#: compiled kernels: only the ops that run on the host (``Op.host``) take or produce them.
STRING = "string"

#: The dtypes numpy has no type for: the reference holds them as ``ml_dtypes`` arrays.
_ML_DTYPES = NARROW_DTYPES | {"bfloat16"}


def is_float(dtype: str) -> bool:
    """Whether ``dtype`` is a floating-point type with arithmetic (the narrow floats are not)."""
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    """Whether ``dtype`` is an integer type with arithmetic (int4/int2 are not)."""
    return dtype in INT_DTYPES


def is_narrow(dtype: str) -> bool:
    """Whether ``dtype`` is one of the narrow storage types (see :data:`NARROW_DTYPES`)."""
    return dtype in NARROW_DTYPES


def is_string(dtype: str) -> bool:
    """Whether ``dtype`` is the string dtype (see :data:`STRING`)."""
    return dtype == STRING


def np_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of the arrays that hold values of IR dtype ``dtype``: ``ml_dtypes``'
    types for bfloat16 and the narrow types (imported only when one is asked for), ``object``
    for strings."""
    if dtype == STRING:
        return np.dtype(object)
    if dtype in _ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise ShapeError(f"dtype {dtype} needs the ml_dtypes package (pip install ml_dtypes)") from None
        return np.dtype(getattr(ml_dtypes, dtype))
    return np.dtype(dtype)


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: its shape and element type."""

    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        object.__setattr__(self, "shape", tuple(_dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def symbols(self) -> set[str]:
        """Names of the symbols the shape depends on."""
        out: set[str] = set()
        for d in self.shape:
            if isinstance(d, Sym):
                out |= d.symbols()
        return out

    @property
    def num_elements(self) -> "int | Sym":
        """Number of elements: an int, or an expression of the symbols."""
        return product(self.shape)

    def concrete(self, env) -> tuple[int, ...]:
        """The shape with every symbol bound by ``env`` (name -> int)."""
        return tuple(evaluate(d, env) for d in self.shape)

    @property
    def size(self) -> int:
        """Number of elements; only for static shapes."""
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                raise ShapeError(f"size of a tensor with symbolic shape {self} is not known")
            n *= d
        return n

    def nbytes_at(self, env) -> int:
        """Bytes of the tensor with every symbol bound by ``env`` (name -> int)."""
        n = 1
        for d in self.concrete(env):
            n *= d
        return n * np_dtype(self.dtype).itemsize

    def max_nbytes(self, bounds) -> int:
        """The most bytes the tensor takes with each symbol in [0, bounds[name]]: each
        dimension at its largest value, which is not always at the bounds (``16 - seq`` is
        largest at seq = 0).  ValueError when a dimension is unbounded."""
        n = 1
        for d in self.shape:
            hi = dim_range(d, bounds)[1]
            if hi is None:
                raise ValueError(f"dimension {d} of {self} has no upper bound")
            n *= max(hi, 0)
        return n * np_dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.size * np_dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        if array.dtype == np.dtype(object):
            if not all(isinstance(x, str) for x in array.reshape(-1)):
                raise ShapeError("an object array is a tensor only when every element is a str (dtype string)")
            return TensorType(tuple(array.shape), STRING)
        return TensorType(tuple(array.shape), str(array.dtype))


def _dim(d) -> Dim:
    if isinstance(d, Sym):
        return d
    if isinstance(d, str):
        try:
            return as_dim(d)
        except SymbolicError as e:
            raise ShapeError(f"dimension {d!r} is neither an integer nor a symbolic expression: {e}") from None
    return int(d)


def broadcast_shapes(*shapes: tuple[Dim, ...], what: str = "operands") -> tuple[Dim, ...]:
    """Numpy-style multidirectional broadcasting of (possibly symbolic) shapes."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dim: Dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if isinstance(d, str):
                d = _dim(d)
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(dim, int) and dim == 1:
                dim = d
            elif dim != d:
                sym = isinstance(d, Sym) or isinstance(dim, Sym)
                raise ShapeError(
                    f"cannot broadcast {what} with shapes {', '.join(_show(s) for s in shapes)}: "
                    f"dimension {i} is {dim} in one and {d} in another"
                    + ("; symbolic dimensions broadcast only against 1 or an equal expression" if sym else "")
                )
        out.append(dim)
    return tuple(out)


def _show(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
