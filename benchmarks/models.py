#!/usr/bin/env python3
"""Two more real architectures for the CPU benchmark: a ViT-B/16 and a GPT-2 (small) decoder stack.

    python benchmarks/models.py --out build/models                 # both, batch 1
    python benchmarks/models.py --out build/models_b8 --batch 8    # both, batch 8
    python benchmarks/models.py --out build/tiny --only vit --tiny  # 2 small blocks (tests)

Plain torch modules with random weights from a fixed seed (no downloads, no torchvision). They are
written with the conventions of ../shared/models/make_models.py, so benchmarks/cpu.py and the
tests treat them like the shared models: for each model NAME the output folder gets
    NAME.onnx           TorchScript export, opset 17, constant folding, static shapes
    NAME.inputs.npz     one array per graph input, keyed by input name
    NAME.outputs.npz    onnxruntime's outputs for those inputs (all graph optimizations off)
and an entry in manifest.json (shapes, dtypes, parameter count, op histogram, versions).

* ``vit``: ViT-B/16 at 224x224. 16x16 patch-embedding convolution, class token, learned position
  embeddings, 12 pre-norm blocks (multi-head attention through explicit matmuls and softmax,
  exact-erf GELU MLP 768 -> 3072 -> 768), final layer norm, linear head on the class token to
  1000 classes. Input ``pixel_values`` (B, 3, 224, 224) -> ``logits`` (B, 1000).
* ``gpt2``: GPT-2 small. Token and learned position embeddings, 12 pre-norm blocks (fused QKV
  projection, causal self-attention, tanh-GELU MLP), final layer norm and an LM head tied to the
  token embedding (vocabulary 50257), sequence length 128. Input ``input_ids`` (B, 128) int64 ->
  ``logits`` (B, 128, 50257).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

import numpy as np

# Full-size configurations, and tiny ones (same code paths) for fast tests.
CONFIGS = {
    "vit": dict(image=224, patch=16, dim=768, depth=12, heads=12, mlp=3072, classes=1000),
    "gpt2": dict(vocab=50257, seq=128, dim=768, depth=12, heads=12, mlp=3072),
}
TINY = {
    "vit": dict(image=32, patch=8, dim=64, depth=2, heads=4, mlp=128, classes=10),
    "gpt2": dict(vocab=300, seq=16, dim=64, depth=2, heads=4, mlp=128),
}


def _attention(q, k, v, heads, head_dim, mask=None):
    """Multi-head attention on (B, T, D) tensors with explicit matmuls and softmax."""
    import torch

    b, t, d = q.shape

    def split(x):  # (B, T, D) -> (B, H, T, head_dim)
        return x.reshape(b, t, heads, head_dim).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v).transpose(1, 2).reshape(b, t, d)


def _block_class():
    import torch.nn as nn

    class Block(nn.Module):
        """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

        def __init__(self, dim, heads, mlp, gelu, eps):
            super().__init__()
            self.heads, self.head_dim = heads, dim // heads
            self.ln1 = nn.LayerNorm(dim, eps=eps)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.ln2 = nn.LayerNorm(dim, eps=eps)
            self.fc1 = nn.Linear(dim, mlp)
            self.act = nn.GELU(approximate=gelu)
            self.fc2 = nn.Linear(mlp, dim)

        def forward(self, x, mask=None):
            q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
            x = x + self.proj(_attention(q, k, v, self.heads, self.head_dim, mask))
            return x + self.fc2(self.act(self.fc1(self.ln2(x))))

    return Block


def _init_linears(model, std=0.02):
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)


def vit(batch, **config):
    """ViT-B/16-like image classifier. Returns (model, inputs, output names, dynamic axes)."""
    import torch
    import torch.nn as nn

    c = {**CONFIGS["vit"], **config}
    Block = _block_class()

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            dim, n = c["dim"], (c["image"] // c["patch"]) ** 2
            self.patch = nn.Conv2d(3, dim, c["patch"], c["patch"])
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
            self.blocks = nn.ModuleList(Block(dim, c["heads"], c["mlp"], "none", 1e-6) for _ in range(c["depth"]))
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.head = nn.Linear(dim, c["classes"])

        def forward(self, pixel_values):
            x = self.patch(pixel_values).flatten(2).transpose(1, 2)        # (B, N, D)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.norm(x)[:, 0])

    model = ViT()
    _init_linears(model)
    model.eval()
    x = torch.randn(batch, 3, c["image"], c["image"])
    return model, {"pixel_values": x}, ["logits"], {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}


def gpt2(batch, **config):
    """GPT-2-small-like decoder stack with a tied LM head. Returns (model, inputs, output names, dynamic axes)."""
    import torch
    import torch.nn as nn

    c = {**CONFIGS["gpt2"], **config}
    Block = _block_class()

    class GPT2(nn.Module):
        def __init__(self):
            super().__init__()
            dim = c["dim"]
            self.wte = nn.Embedding(c["vocab"], dim)
            self.wpe = nn.Embedding(c["seq"], dim)
            self.blocks = nn.ModuleList(Block(dim, c["heads"], c["mlp"], "tanh", 1e-5) for _ in range(c["depth"]))
            self.norm = nn.LayerNorm(dim)
            self.register_buffer("causal", torch.tril(torch.ones(c["seq"], c["seq"], dtype=torch.bool)),
                                 persistent=False)

        def forward(self, input_ids):
            t = input_ids.shape[1]
            x = self.wte(input_ids) + self.wpe.weight[:t]
            mask = self.causal[:t, :t]
            for blk in self.blocks:
                x = blk(x, mask)
            return torch.matmul(self.norm(x), self.wte.weight.t())   # LM head tied to wte

    model = GPT2()
    _init_linears(model)
    nn.init.normal_(model.wte.weight, 0.0, 0.02)
    nn.init.normal_(model.wpe.weight, 0.0, 0.01)
    # GPT-2 scales the residual projections by 1/sqrt(2 * depth)
    for blk in model.blocks:
        nn.init.normal_(blk.proj.weight, 0.0, 0.02 / math.sqrt(2 * c["depth"]))
        nn.init.normal_(blk.fc2.weight, 0.0, 0.02 / math.sqrt(2 * c["depth"]))
    model.eval()
    ids = torch.randint(0, c["vocab"], (batch, c["seq"]), dtype=torch.int64)
    return model, {"input_ids": ids}, ["logits"], {"input_ids": {0: "batch", 1: "seq"},
                                                   "logits": {0: "batch", 1: "seq"}}


MODELS = {"vit": vit, "gpt2": gpt2}


def make(name: str, batch: int = 1, seed: int = 0, tiny: bool = False, **config):
    """The torch model and its example inputs, seeded: the same weights on every call."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    return MODELS[name](batch, **{**(TINY[name] if tiny else {}), **config})


def build(name: str, out: str, batch: int = 1, seed: int = 0, tiny: bool = False, **config) -> dict:
    """Export NAME to ``out``/NAME.onnx with its inputs and onnxruntime's outputs; returns a manifest entry."""
    import onnx
    import onnxruntime as ort
    import torch

    os.makedirs(out, exist_ok=True)
    model, inputs, output_names, _ = make(name, batch, seed, tiny, **config)
    path = os.path.join(out, f"{name}.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False: the exporter most files come from
        torch.onnx.export(model, tuple(inputs.values()), path, dynamo=False, opset_version=17,
                          do_constant_folding=True, input_names=list(inputs), output_names=output_names)
    proto = onnx.load(path)
    onnx.checker.check_model(proto)

    feeds = {k: v.numpy() for k, v in inputs.items()}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain reference
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    outs = sess.run(output_names, feeds)
    with torch.no_grad():
        ref = model(*inputs.values())
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    agree = max(float(np.max(np.abs(o - r.numpy())) / (np.max(np.abs(r.numpy())) + 1e-12))
                for o, r in zip(outs, ref))
    np.savez(os.path.join(out, f"{name}.inputs.npz"), **feeds)
    np.savez(os.path.join(out, f"{name}.outputs.npz"), **dict(zip(output_names, outs)))

    def describe(values):
        return [{"name": v.name,
                 "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                 "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param
                           for d in v.type.tensor_type.shape.dim]} for v in values]

    params = int(sum(p.numel() for p in model.parameters()))
    ops: dict[str, int] = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"{name}: {os.path.getsize(path) / 1e6:.1f} MB, {params / 1e6:.1f} M params, "
          f"{len(proto.graph.node)} nodes, onnxruntime vs torch rel. error {agree:.1e}", file=sys.stderr)
    return {"file": f"{name}.onnx", "inputs": describe(proto.graph.input),
            "outputs": describe(proto.graph.output), "batch": batch, "parameters": params,
            "nodes": len(proto.graph.node), "op_types": ops, "opset": 17, "seed": seed,
            "config": {**CONFIGS[name], **(TINY[name] if tiny else {}), **config},
            "onnxruntime_vs_torch_relerr": agree, "dynamic_file": None}


def update_manifest(out: str, entries: dict) -> None:
    """Add entries to ``out``/manifest.json (the file make_models.py writes), keeping the others."""
    import onnx
    import onnxruntime
    import torch

    path = os.path.join(out, "manifest.json")
    manifest = {"models": {}}
    if os.path.exists(path):
        with open(path) as f:
            manifest = json.load(f)
    manifest.setdefault("models", {}).update(entries)
    manifest.setdefault("versions", {"torch": torch.__version__, "onnx": onnx.__version__,
                                     "onnxruntime": onnxruntime.__version__})
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/models", help="output folder (created)")
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), help="build only these models")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="small test configurations (2 blocks, small dims)")
    a = ap.parse_args(argv)
    entries = {name: build(name, a.out, a.batch, a.seed, a.tiny) for name in (a.only or sorted(MODELS))}
    if not a.tiny:  # tiny models keep the full names; keep them out of a real model folder's manifest
        update_manifest(a.out, entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
