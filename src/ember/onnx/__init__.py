"""ONNX integration beyond the frontend: the ``onnx.backend`` interface (``ember.onnx.backend``)."""
