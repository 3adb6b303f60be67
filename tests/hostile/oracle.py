"""onnxruntime's answer for a model that Ember ran, in a child process of its own."""

from __future__ import annotations

import os

import numpy as np

from pathlib import Path

from .child import compare, limit_memory, redirect_output, write_json


def run_oracle(model: str, feeds_npz: str, outputs_npz: str, out_path: str, mem_bytes: int) -> None:
    os.setpgid(0, 0)
    redirect_output(Path(out_path).with_suffix(".log"))
    record: dict = {}
    try:
        limit_memory(mem_bytes)
        import onnxruntime as ort

        feeds = dict(np.load(feeds_npz, allow_pickle=True))
        ours = dict(np.load(outputs_npz, allow_pickle=True))
        try:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.log_severity_level = 4
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            names = [o.name for o in sess.get_outputs()]
            ref = dict(zip(names, sess.run(None, feeds)))
        except Exception as e:
            record.update(status="refused", message=f"{type(e).__name__}: {str(e)[:400]}")
            return
        record.update(status="ran", mismatch=compare(ours, ref))
    except BaseException as e:
        record.update(status="error", message=f"{type(e).__name__}: {str(e)[:400]}")
    finally:
        write_json(out_path, record)
        os._exit(0)
