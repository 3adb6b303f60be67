"""Ember: an end-to-end deep-learning inference compiler.

    import ember
    module = ember.compile("model.onnx", target="cpu")
    outputs = module.run({"input": x})

The public surface: :func:`compile`, :func:`load`, :class:`Module`, the frontends
(:func:`from_onnx`, :func:`from_tflite`), :class:`Target` and the ``ember`` command line.
"""

__version__ = "0.1.0"

from . import errors, limits  # noqa: E402
from .target import Target  # noqa: E402


def compile(model, target="cpu", opt_level=3, **kwargs):
    """Compile a model for ``target``; see :func:`ember.build.compile.compile`."""
    from .build.compile import compile as _compile

    return _compile(model, target, opt_level, **kwargs)


def load(path):
    """Load a compiled artifact written by :meth:`Module.save` or ``ember compile``."""
    from .runtime import load as _load

    return _load(path)


def from_onnx(model, shapes=None, bounds=None):
    """Translate an ONNX model (path or ModelProto) into Ember's graph IR."""
    from .frontend import from_onnx as _from_onnx

    return _from_onnx(model, shapes=shapes, bounds=bounds)


def from_tflite(model, batch=None):
    """Translate a TFLite model (path or bytes) into Ember's graph IR (needs ``flatbuffers``)."""
    from .frontend.tflite import from_tflite as _from_tflite

    return _from_tflite(model, batch=batch)


def __getattr__(name):
    if name == "Module":
        from .runtime import Module

        return Module
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


__all__ = ["compile", "load", "from_onnx", "from_tflite", "Module", "Target", "errors", "limits", "__version__"]
