"""Frontends: translate a framework's model into the graph IR, one module per framework.

``from_onnx`` is imported when it is first asked for, not with the package: reading a model
file's type or stamp (``files``, ``onnx_files``: what a cached compile's key needs) imports
no frontend (the ONNX frontend and its op tables took 0.4 s of a cached compile, and importing
``onnx`` over a second)."""

__all__ = ["from_onnx"]


def __getattr__(name: str):
    if name == "from_onnx":
        from .onnx import from_onnx

        return from_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
