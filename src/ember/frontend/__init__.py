"""Frontends: translate a framework's model into the graph IR, one module per framework."""

from .onnx import from_onnx

__all__ = ["from_onnx"]
