"""Ember: an end-to-end deep-learning inference compiler.

    import ember
    module = ember.compile("model.onnx", target="cpu")
    outputs = module.run({"input": x})

The public surface: :func:`compile`, :func:`load`, :class:`Module`, the frontends
(:func:`from_onnx`, :func:`from_torch`, :func:`from_tflite`, :func:`from_keras`,
:func:`from_tensorflow`), :class:`Target` and the ``ember``
command line.
"""

__version__ = "0.1.0"

from . import errors, limits  # noqa: E402
from .target import Target  # noqa: E402


def compile(model, target="cpu", opt_level=3, **kwargs):
    """Compile a model for ``target``; see :func:`ember.driver.compile.compile`.  A
    ``torch.nn.Module`` is translated by :func:`from_torch` first, from ``example_args=`` (and
    ``dynamic_shapes=``, ``example_kwargs=``); a ``keras.Model`` by :func:`from_keras`."""
    from .driver.compile import compile as _compile

    model, kwargs = _torch_model(model, kwargs)
    model = _keras_model(model)
    return _compile(model, target, opt_level, **kwargs)


def load(path):
    """Load a compiled artifact written by :meth:`Module.save` or ``ember compile``."""
    from .runtime import load as _load

    return _load(path)


def from_onnx(model, shapes=None, bounds=None):
    """Translate an ONNX model (path or ModelProto) into Ember's graph IR."""
    from .frontend import from_onnx as _from_onnx

    return _from_onnx(model, shapes=shapes, bounds=bounds)


def from_torch(module, example_args=(), dynamic_shapes=None, **kwargs):
    """Translate a PyTorch module (through ``torch.export``), an ``ExportedProgram`` or a
    ``.pt2`` file into Ember's graph IR; see :func:`ember.frontend.torch.from_torch`."""
    from .frontend.torch import from_torch as _from_torch

    return _from_torch(module, example_args, dynamic_shapes, **kwargs)


def _torch_model(model, kwargs):
    """``model`` as a Graph when it is a torch module or exported program (``torch`` already
    imported by the caller, so this never imports it), with the torch-only options taken out."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, (torch.nn.Module, torch.export.ExportedProgram)):
        return model, kwargs
    kwargs = dict(kwargs)
    opts = {k: kwargs.pop(k) for k in ("example_kwargs",) if k in kwargs}
    graph = from_torch(model, kwargs.pop("example_args", ()), kwargs.pop("dynamic_shapes", None), **opts,
                       bounds=kwargs.pop("bounds", None))
    return graph, kwargs


def _keras_model(model):
    """``model`` as a Graph when it is a Keras model (keras already imported by the caller)."""
    import sys

    keras = sys.modules.get("keras")
    if keras is None or not isinstance(model, getattr(keras, "Model", ())):
        return model
    return from_keras(model)


def from_tflite(model, batch=None):
    """Translate a TFLite model (path or bytes) into Ember's graph IR (needs ``flatbuffers``)."""
    from .frontend.tflite import from_tflite as _from_tflite

    return _from_tflite(model, batch=batch)


def from_keras(model, input_signature=None, bounds=None):
    """Translate a Keras 3 model (object, ``.keras`` or legacy ``.h5`` path) into Ember's graph IR
    through its frozen TensorFlow graph; see :func:`ember.frontend.tensorflow.from_keras`."""
    from .frontend.tensorflow import from_keras as _from_keras

    return _from_keras(model, input_signature=input_signature, bounds=bounds)


def from_tensorflow(model, signature="serving_default", bounds=None):
    """Translate a SavedModel directory or a concrete ``tf.function`` into Ember's graph IR; see
    :func:`ember.frontend.tensorflow.from_tensorflow`."""
    from .frontend.tensorflow import from_tensorflow as _from_tensorflow

    return _from_tensorflow(model, signature=signature, bounds=bounds)


def __getattr__(name):
    if name == "Module":
        from .runtime import Module

        return Module
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


__all__ = ["compile", "load", "from_onnx", "from_torch", "from_tflite", "from_keras", "from_tensorflow", "Module", "Target", "errors", "limits",
           "__version__"]
