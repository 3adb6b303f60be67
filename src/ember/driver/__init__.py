"""The compiler driver: runs every layer in order to turn a model into an artifact."""

from .compile import compile, generate

__all__ = ["compile", "generate"]
