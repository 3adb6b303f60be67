"""Errors a user can cause.

Every exception Ember raises on purpose derives from :class:`EmberError` and carries a stable
code (``E0xx`` frontend, ``E1xx`` graph and passes, ``E2xx`` codegen and toolchain, ``E3xx``
runtime and inputs); ``docs/errors.md`` documents each one.  Messages name the node, the op
and what was expected, so the user can find the spot in their model.
"""

from __future__ import annotations


class EmberError(Exception):
    """Base class of all Ember errors."""

    code = "E000"

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None):
        self.node = node
        self.op = op
        where = ""
        if op is not None and node is not None:
            where = f"{op} node '{node}': "
        elif op is not None:
            where = f"{op}: "
        elif node is not None:
            where = f"node '{node}': "
        super().__init__(f"[{self.code}] {where}{message}")


# ---- E0xx: frontends ------------------------------------------------------------------------

class FrontendError(EmberError):
    """A model could not be read or translated."""

    code = "E001"


class ModelLoadError(FrontendError):
    """The model file is missing, unreadable or corrupt."""

    code = "E002"


class UnsupportedOpError(FrontendError):
    """The model uses ops Ember cannot translate; lists all of them at once."""

    code = "E003"

    def __init__(self, unsupported: dict[str, list[str]], framework: str = "ONNX"):
        self.unsupported = unsupported
        lines = []
        for op_type, names in sorted(unsupported.items()):
            shown = ", ".join(repr(n) for n in names[:5])
            more = f", ... ({len(names) - 5} more)" if len(names) > 5 else ""
            lines.append(f"  {op_type} x{len(names)}: {shown}{more}")
        total = sum(len(v) for v in unsupported.values())
        super().__init__(
            f"{framework} model has {total} node(s) of {len(unsupported)} unsupported op type(s) "
            f"({', '.join(sorted(unsupported))}):\n" + "\n".join(lines)
        )


class InvalidModelError(FrontendError):
    """The model is well-formed but violates the framework's rules (bad attribute, shape...)."""

    code = "E004"


# ---- E1xx: graph IR and passes --------------------------------------------------------------

class GraphError(EmberError):
    """The graph IR is malformed (failed verification)."""

    code = "E101"


class ParseError(GraphError):
    """The text form of a graph could not be parsed."""

    code = "E102"


class TypeInferenceError(GraphError):
    """An op was given operands of the wrong types or shapes."""

    code = "E103"


class ShapeError(TypeInferenceError):
    """Operand shapes are incompatible (broadcasting, reshape sizes, ...)."""

    code = "E104"


class LimitError(GraphError):
    """A model needs more than the resource limits allow (``ember.limits``): a tensor, the
    memory of the compiled model, the graph's nodes, a loop's iterations or nested subgraphs.
    ``limit`` names the limit, ``size`` what was asked and ``maximum`` the limit's value."""

    code = "E105"

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None,
                 limit: str | None = None, size: int | None = None, maximum: int | None = None):
        self.limit, self.size, self.maximum = limit, size, maximum
        super().__init__(message, node=node, op=op)


# ---- E2xx: codegen and toolchain ------------------------------------------------------------

class CodegenError(EmberError):
    """A kernel could not be generated for the target."""

    code = "E201"


class ToolchainError(EmberError):
    """The native compiler failed or is missing."""

    code = "E202"


class TargetError(EmberError):
    """An unknown or unsupported target was requested."""

    code = "E203"


# ---- E3xx: runtime and inputs ---------------------------------------------------------------

class RuntimeError_(EmberError):
    """A compiled module failed while running."""

    code = "E301"


class InputError(EmberError):
    """Inputs given to a compiled module do not match its signature."""

    code = "E302"


class ArtifactError(EmberError):
    """A compiled artifact is missing, truncated, corrupt or from an incompatible version."""

    code = "E303"


class RuntimeLimitError(RuntimeError_):
    """At run time, a tensor whose size the input shapes decide is above the resource limits
    (``ember.limits``); checked before it is allocated.  Same attributes as :class:`LimitError`."""

    code = "E304"

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None,
                 limit: str | None = None, size: int | None = None, maximum: int | None = None):
        self.limit, self.size, self.maximum = limit, size, maximum
        super().__init__(message, node=node, op=op)


class IndexOutOfRangeError(RuntimeError_):
    """A kernel met an index, read from the inputs, outside the range of the axis it indexes."""

    code = "E305"


# The public name; the trailing underscore above only avoids shadowing the builtin in this file.
EmberRuntimeError = RuntimeError_
