"""Which frontend reads a model file: the table of file types behind ``ember.compile(path)``,
``ember compile``, ``ember run`` and ``ember info``.

Each :class:`FileType` says how a path is recognised (a suffix, or a directory holding a given
file) and which frontend function translates it; :func:`file_type` picks the first that matches,
:func:`graph_from_file` translates.  ONNX is the default: a path no other type claims is read
as ONNX, as before there was a table.  A frontend adds its type here (one line) and nothing else
in the driver or CLI changes.  The frameworks are imported only when their type is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import EmberError
from ..graph.ir import Graph

Reader = Callable[[str, "Mapping[str, Any] | None", "Mapping[str, int] | None"], Graph]


@dataclass(frozen=True)
class FileType:
    name: str                       #: the format's name, in errors and `ember info`
    translated: str = ""            #: what the frontend translates, where not the file itself
    suffixes: tuple[str, ...] = ()  #: a file whose name ends so (lower case)
    marker: str | None = None       #: or a directory holding this file
    read: Reader | None = None
    takes_shapes: bool = False      #: whether ``shapes=`` applies (else its signature gives them)

    def matches(self, path: str) -> bool:
        if self.marker is not None:
            return os.path.isfile(os.path.join(path, self.marker))
        return path.lower().endswith(self.suffixes)


def _onnx(path, shapes, bounds):
    from .onnx import from_onnx

    return from_onnx(path, shapes=shapes, bounds=bounds)


def _keras(path, shapes, bounds):
    from .tensorflow import from_keras

    return from_keras(path, bounds=bounds)


def _saved_model(path, shapes, bounds):
    from .tensorflow import from_tensorflow

    return from_tensorflow(path, bounds=bounds)


def _tflite(path, shapes, bounds):
    from .tflite import from_tflite

    if bounds:
        raise EmberError("bounds= does not apply to a TFLite model: its one open size, the batch, "
                         "has no limit (use ember.from_tflite(path, batch=N) to fix it)")
    return from_tflite(path)


def _torch_export(path, shapes, bounds):
    from .torch import from_torch

    return from_torch(path, bounds=bounds)


FILE_TYPES: tuple[FileType, ...] = (
    FileType("Keras", "the frozen TensorFlow graph", (".keras", ".h5"), read=_keras),
    FileType("TensorFlow SavedModel", "the frozen TensorFlow graph", marker="saved_model.pb", read=_saved_model),
    FileType("TFLite", "the flatbuffer's operators", (".tflite",), read=_tflite),
    FileType("torch.export program", "its graph decomposed to core ATen", (".pt2",), read=_torch_export),
    FileType("ONNX", "", (".onnx",), read=_onnx, takes_shapes=True),
)
ONNX = FILE_TYPES[-1]

#: the suffixes that name a model file (``ember run`` compiles these; anything else is an artifact)
MODEL_SUFFIXES: tuple[str, ...] = tuple(s for t in FILE_TYPES for s in t.suffixes)


def file_type(model: Any) -> FileType:
    """The file type of a model path; ONNX for anything no type claims (and for an
    ``onnx.ModelProto`` or bytes, which only the ONNX frontend takes)."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        for t in FILE_TYPES:
            if t.matches(path):
                return t
    return ONNX


def graph_from_file(model: Any, shapes: Mapping[str, Any] | None = None,
                    bounds: Mapping[str, int] | None = None) -> Graph:
    """``model`` translated by the frontend of its file type."""
    t = file_type(model)
    if shapes and not t.takes_shapes:
        raise EmberError(f"shapes= applies to ONNX models; a {t.name} model's shapes are its signature's")
    return t.read(model if t is ONNX else os.fspath(model), shapes, bounds)
