"""``image_decode``: encoded image bytes to pixels, a host op (ONNX ImageDecoder).

``image_decode(x) {pixel_format, height, width}``: ``x`` is the encoded file as a 1-D uint8
tensor; the result is uint8 [height, width, 3] (RGB or BGR) or [height, width, 1] (Grayscale),
where ``height`` and ``width`` name the symbols of the two dimensions only the data decides.
Its kernel (``ember.runtime.host.images``) is both its reference and what the model runs.
"""

from __future__ import annotations

from ..graph.types import TensorType
from ..runtime.host.images import PIXEL_FORMATS
from .base import REQUIRED, register
from .strings import HostOp


@register
class ImageDecode(HostOp):
    name = "image_decode"
    host_kernel = "image_decode"
    attrs = {"pixel_format": "RGB", "height": REQUIRED, "width": REQUIRED}

    def infer(self, a, x):
        if x.dtype != "uint8" or x.rank != 1:
            raise self.fail(f"takes the encoded image as a 1-D uint8 tensor, got {x}")
        if a["pixel_format"] not in PIXEL_FORMATS:
            raise self.fail(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, got {a['pixel_format']!r}")
        channels = 1 if a["pixel_format"] == "Grayscale" else 3
        return TensorType((self.data_dim(a, "height"), self.data_dim(a, "width"), channels), "uint8")
