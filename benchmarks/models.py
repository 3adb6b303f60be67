#!/usr/bin/env python3
"""The project's model set: real architectures as ONNX files with fixed inputs and onnxruntime's
outputs, for the whole-model tests and the CPU benchmark.

    python benchmarks/models.py                                     # the test models, batch 1
    python benchmarks/models.py --out build/models_b8 --batch 8     # the same at batch 8
    python benchmarks/models.py --dynamic                           # also NAME_dyn.onnx
    python benchmarks/models.py --only vit gpt2                     # the benchmark's transformers
    python benchmarks/models.py --out build/tiny --only vit --tiny  # small configurations (tests)
    python benchmarks/models.py --check                             # exit 1 when one is not built

``make models`` runs the first line into ``$EMBER_MODELS_DIR`` (default build/models, git-ignored).
Plain torch modules written here (and BERT, the T5 encoder and MobileViT from transformers' own
classes, configured in code), random weights from a fixed seed: no network, no downloaded weights or
configurations, and every run writes the same files.  Needs torch, transformers (BERT, T5,
MobileViT only), onnx and onnxruntime.  For each model NAME the output folder gets
    NAME.onnx           TorchScript export, opset 17, constant folding, static shapes
    NAME_dyn.onnx       with --dynamic: the same model with symbolic sizes (below)
    NAME.inputs.npz     one array per graph input, keyed by input name
    NAME.outputs.npz    onnxruntime's outputs for those inputs (all graph optimizations off)
and an entry in manifest.json (file, inputs and outputs with shapes and dtypes, batch, parameter
count, node count and op histogram, opset, seed, configuration, how far onnxruntime is from torch,
dynamic_file) next to the versions of torch, onnx and onnxruntime.  A model whose files and
manifest entry are there, made by this version of the recipes with the same batch, seed and
configuration, is not built again (``--force`` rebuilds it).

The test models (built by default):
* ``resnet50``: ResNet-50 v1.5 (the stride in the 3x3 convolution of a bottleneck), 224x224.
  Input ``input`` (B, 3, 224, 224) -> ``logits`` (B, 1000).
* ``mobilenet_v2``: MobileNetV2 1.0 (inverted residuals, depthwise 3x3, ReLU6), 224x224.
  Input ``input`` (B, 3, 224, 224) -> ``logits`` (B, 1000).
  Both convolution nets have random batch-norm scales and shifts, and running statistics measured
  on random images in training mode (so every layer's activations have a realistic scale instead
  of the identity statistics of an untrained net); the export folds them into the convolutions.
  Dynamic: batch, height and width.
* ``bert_base``: BERT-base (transformers' BertModel from the default BertConfig: 12 layers,
  hidden 768, 12 heads, vocabulary 30522) with its pooler, sequence length 128.  Inputs
  ``input_ids`` and ``attention_mask`` (B, 128) int64, the last quarter of the mask 0 (padding)
  -> ``last_hidden_state`` (B, 128, 768), ``pooler_output`` (B, 768).  Dynamic: batch and seq.

The benchmark's transformers (``--only``):
* ``vit``: ViT-B/16 at 224x224. 16x16 patch-embedding convolution, class token, learned position
  embeddings, 12 pre-norm blocks (multi-head attention through explicit matmuls and softmax,
  exact-erf GELU MLP 768 -> 3072 -> 768), final layer norm, linear head on the class token to
  1000 classes. Input ``pixel_values`` (B, 3, 224, 224) -> ``logits`` (B, 1000).  Dynamic: batch.
* ``gpt2``: GPT-2 small. Token and learned position embeddings, 12 pre-norm blocks (fused QKV
  projection, causal self-attention, tanh-GELU MLP), final layer norm and an LM head tied to the
  token embedding (vocabulary 50257), sequence length 128. Input ``input_ids`` (B, 128) int64 ->
  ``logits`` (B, 128, 50257).  Dynamic: batch and seq.
* ``t5_encoder``: T5-small's encoder (transformers' T5EncoderModel from the default T5Config:
  6 layers, d_model 512, 8 heads of 64, d_ff 2048 with ReLU, RMS layer norms, relative position
  buckets (32, the bias of the first layer shared by all), vocabulary 32128), sequence length 128.
  Input ``input_ids`` (B, 128) int64 -> ``last_hidden_state`` (B, 128, 512).  Dynamic: batch and seq.
* ``mobilevit``: MobileViT-small (transformers' MobileViTForImageClassification from the default
  MobileViTConfig: MobileNetV2 blocks with SiLU, three MobileViT blocks of 2, 4 and 3 transformer
  layers at widths 144, 192 and 240 on 2x2 patches), 256x256, 1000 classes, batch-norm statistics
  measured on random images as for the convolution nets.
  Input ``pixel_values`` (B, 3, 256, 256) -> ``logits`` (B, 1000).  Dynamic: batch.

The tiny configurations (``--tiny``, for tests) exist for vit, gpt2, t5_encoder and mobilevit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: Bumped whenever a recipe changes what it writes: older files are then built again.
RECIPE_VERSION = 1
OPSET = 17

#: What ``make models`` builds and the whole-model tests read.
TEST_MODELS = ["resnet50", "mobilenet_v2", "bert_base"]

# Full-size configurations, and tiny ones (same code paths) for fast tests.
CONFIGS = {
    "resnet50": dict(image=224, blocks=[3, 4, 6, 3], classes=1000),
    "mobilenet_v2": dict(image=224, classes=1000),
    "bert_base": dict(seq=128),
    "vit": dict(image=224, patch=16, dim=768, depth=12, heads=12, mlp=3072, classes=1000),
    "gpt2": dict(vocab=50257, seq=128, dim=768, depth=12, heads=12, mlp=3072),
    "t5_encoder": dict(seq=128),
    "mobilevit": dict(image=256, classes=1000),
}
TINY = {
    "vit": dict(image=32, patch=8, dim=64, depth=2, heads=4, mlp=128, classes=10),
    "gpt2": dict(vocab=300, seq=16, dim=64, depth=2, heads=4, mlp=128),
    "t5_encoder": dict(seq=16, vocab=300, dim=64, depth=2, heads=4, mlp=128),
    "mobilevit": dict(image=64, classes=10, hidden=[32, 48, 64], neck=[16, 16, 24, 32, 40, 48, 96]),
}


def default_out() -> Path:
    return Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))


# ---- convolution nets ----------------------------------------------------------------------------

def _conv_classes():
    """The building blocks of the convolution nets (a function, so that torch is imported only
    when a model is made)."""
    import torch.nn as nn

    class ConvNorm(nn.Sequential):
        """Convolution without bias, batch norm, then ``act`` (a module class) unless None;
        'same' padding for odd kernels."""

        def __init__(self, cin, cout, kernel, stride=1, groups=1, act=nn.ReLU):
            parts = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2,
                               groups=groups, bias=False),
                     nn.BatchNorm2d(cout)]
            super().__init__(*parts, *([act()] if act is not None else []))

    class Bottleneck(nn.Module):
        """ResNet v1.5 bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand by 4; projection
        shortcut where the shape changes; ReLU after the sum."""

        def __init__(self, cin, width, stride):
            super().__init__()
            cout = 4 * width
            self.branch = nn.Sequential(ConvNorm(cin, width, 1), ConvNorm(width, width, 3, stride),
                                        ConvNorm(width, cout, 1, act=None))
            needs_projection = stride != 1 or cin != cout
            self.shortcut = ConvNorm(cin, cout, 1, stride, act=None) if needs_projection else nn.Identity()
            self.out = nn.ReLU()

        def forward(self, x):
            return self.out(self.branch(x) + self.shortcut(x))

    class InvertedResidual(nn.Module):
        """MobileNetV2 block: 1x1 expansion (unless the factor is 1), depthwise 3x3, linear 1x1
        projection; the input is added back when the shape stays."""

        def __init__(self, cin, cout, stride, factor):
            super().__init__()
            hidden = cin * factor
            layers = [] if factor == 1 else [ConvNorm(cin, hidden, 1, act=nn.ReLU6)]
            layers += [ConvNorm(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                       ConvNorm(hidden, cout, 1, act=None)]
            self.branch = nn.Sequential(*layers)
            self.keeps_input = stride == 1 and cin == cout

        def forward(self, x):
            y = self.branch(x)
            return x + y if self.keeps_input else y

    return ConvNorm, Bottleneck, InvertedResidual


def _random_conv_weights(model, head_std):
    """He-normal convolutions, a small normal classifier, batch-norm scales and shifts drawn
    around 1 and 0 (a trained net's are not all 1 and 0)."""
    import torch
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, head_std)
            nn.init.zeros_(m.bias)


def _measure_batch_norm_statistics(model, image, rounds=4, batch=8):
    """Replace the identity running statistics by the mean and variance each batch norm sees on
    random images (a plain average over ``rounds`` training-mode batches), then switch to eval."""
    import torch
    import torch.nn as nn

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None            # None: cumulative average instead of an exponential one
    model.train()
    with torch.no_grad():
        for _ in range(rounds):
            model(torch.randn(batch, 3, image, image))
    model.eval()


def _image_model(model, batch, image):
    """(model, inputs, output names, dynamic axes) of an image classifier taking ``input``."""
    import torch

    x = torch.randn(batch, 3, image, image)
    return model, {"input": x}, ["logits"], {"input": {0: "batch", 2: "height", 3: "width"},
                                             "logits": {0: "batch"}}


def resnet50(batch, **config):
    """ResNet-50 v1.5 image classifier. Returns (model, inputs, output names, dynamic axes)."""
    import torch.nn as nn

    c = {**CONFIGS["resnet50"], **config}
    ConvNorm, Bottleneck, _ = _conv_classes()
    layers = [ConvNorm(3, 64, 7, 2), nn.MaxPool2d(3, 2, padding=1)]
    cin = 64
    for stage, count in enumerate(c["blocks"]):
        width = 64 << stage
        for i in range(count):
            layers.append(Bottleneck(cin, width, 2 if i == 0 and stage > 0 else 1))
            cin = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, c["classes"])]
    model = nn.Sequential(*layers)
    _random_conv_weights(model, head_std=0.01)
    _measure_batch_norm_statistics(model, c["image"])
    return _image_model(model, batch, c["image"])


#: MobileNetV2's stages: expansion factor, output channels, blocks, stride of the first block
MOBILENET_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2(batch, **config):
    """MobileNetV2 1.0 image classifier. Returns (model, inputs, output names, dynamic axes)."""
    import torch.nn as nn

    c = {**CONFIGS["mobilenet_v2"], **config}
    ConvNorm, _, InvertedResidual = _conv_classes()
    layers, cin = [ConvNorm(3, 32, 3, 2, act=nn.ReLU6)], 32
    for factor, cout, count, stride in MOBILENET_V2_STAGES:
        for i in range(count):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, factor))
            cin = cout
    layers += [ConvNorm(cin, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(1280, c["classes"])]
    model = nn.Sequential(*layers)
    _random_conv_weights(model, head_std=0.01)
    _measure_batch_norm_statistics(model, c["image"])
    return _image_model(model, batch, c["image"])


# ---- BERT ----------------------------------------------------------------------------------------

def bert_base(batch, **config):
    """BERT-base encoder with pooler, randomly initialized by transformers from its default
    configuration. Returns (model, inputs, output names, dynamic axes)."""
    import torch
    import transformers

    c = {**CONFIGS["bert_base"], **config}

    class Encoder(torch.nn.Module):
        """BertModel with its two outputs as a tuple (names for the ONNX graph's outputs)."""

        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(transformers.BertConfig(), add_pooling_layer=True)

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state, out.pooler_output

    model = Encoder().eval()
    vocab, seq = model.bert.config.vocab_size, c["seq"]
    ids = torch.randint(0, vocab, (batch, seq), dtype=torch.int64)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[:, seq - seq // 4:] = 0     # padding at the end, so that the mask matters
    both = {0: "batch", 1: "seq"}
    return model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state", "pooler_output"], \
        {"input_ids": both, "attention_mask": both, "last_hidden_state": both, "pooler_output": {0: "batch"}}


# ---- transformers written here (ViT, GPT-2) ------------------------------------------------------

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


# ---- transformers' classes (T5 encoder, MobileViT) -----------------------------------------------

def _one_output(model, argument: str, field: str):
    """A transformers model taking one keyword ``argument`` and giving its output's ``field`` as a
    plain tensor (the one output of the ONNX graph)."""
    import torch

    class OneOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return getattr(self.model(**{argument: x}), field)

    return OneOutput()


def t5_encoder(batch, **config):
    """T5-small's encoder (transformers' T5EncoderModel from the default T5Config), randomly
    initialized by transformers. Returns (model, inputs, output names, dynamic axes)."""
    import torch
    import transformers

    c = {**CONFIGS["t5_encoder"], **config}
    sizes = {k: c[k] for k in ("vocab", "dim", "depth", "heads", "mlp") if k in c}
    cfg = transformers.T5Config(**({} if not sizes else dict(
        vocab_size=sizes["vocab"], d_model=sizes["dim"], d_kv=sizes["dim"] // sizes["heads"],
        num_layers=sizes["depth"], num_heads=sizes["heads"], d_ff=sizes["mlp"])))

    model = _one_output(transformers.T5EncoderModel(cfg), "input_ids", "last_hidden_state").eval()
    ids = torch.randint(0, cfg.vocab_size, (batch, c["seq"]), dtype=torch.int64)
    both = {0: "batch", 1: "seq"}
    return model, {"input_ids": ids}, ["last_hidden_state"], {"input_ids": both, "last_hidden_state": both}


def mobilevit(batch, **config):
    """MobileViT-small image classifier (transformers' MobileViTForImageClassification from the
    default MobileViTConfig, which is MobileViT-small), randomly initialized by transformers, its
    batch-norm statistics measured on random images. Returns (model, inputs, output names,
    dynamic axes)."""
    import torch
    import transformers

    c = {**CONFIGS["mobilevit"], **config}
    extra = {}
    if "hidden" in c:
        extra = dict(hidden_sizes=c["hidden"], neck_hidden_sizes=c["neck"])
    cfg = transformers.MobileViTConfig(image_size=c["image"], num_labels=c["classes"], **extra)

    model = _one_output(transformers.MobileViTForImageClassification(cfg), "pixel_values", "logits")
    _measure_batch_norm_statistics(model, c["image"])
    x = torch.randn(batch, 3, c["image"], c["image"])
    return model, {"pixel_values": x}, ["logits"], {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}


MODELS = {"resnet50": resnet50, "mobilenet_v2": mobilenet_v2, "bert_base": bert_base, "vit": vit, "gpt2": gpt2,
          "t5_encoder": t5_encoder, "mobilevit": mobilevit}


def config_of(name: str, tiny: bool = False, **config) -> dict:
    """The configuration ``make`` builds ``name`` with."""
    if tiny and name not in TINY:
        raise ValueError(f"{name} has no tiny configuration (only {', '.join(sorted(TINY))})")
    return {**CONFIGS[name], **(TINY[name] if tiny else {}), **config}


def make(name: str, batch: int = 1, seed: int = 0, tiny: bool = False, **config):
    """The torch model and its example inputs, seeded: the same weights and inputs on every call.
    Returns (model in eval mode, inputs by name, output names, dynamic axes)."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    model, inputs, output_names, dynamic_axes = MODELS[name](batch, **config_of(name, tiny, **config))
    return model.eval(), inputs, output_names, dynamic_axes


def _export(model, inputs: dict, output_names: list, path: Path, dynamic_axes=None) -> None:
    """TorchScript export (what most ONNX files in the wild come from) to a temporary file, then
    renamed to ``path``."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the exporter's deprecation and tracer warnings
        torch.onnx.export(model, tuple(inputs.values()), str(tmp), dynamo=False, opset_version=OPSET,
                          do_constant_folding=True, input_names=list(inputs), output_names=output_names,
                          dynamic_axes=dynamic_axes)
    os.replace(tmp, path)


def _save_npz(path: Path, arrays: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:           # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _describe(values) -> list[dict]:
    """Name, numpy dtype and shape (ints, or the names of symbolic sizes) of graph inputs/outputs."""
    import onnx

    return [{"name": v.name,
             "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
             "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param
                       for d in v.type.tensor_type.shape.dim]} for v in values]


def build(name: str, out, batch: int = 1, seed: int = 0, tiny: bool = False, dynamic: bool = False,
          **config) -> dict:
    """Export NAME to ``out``/NAME.onnx (and NAME_dyn.onnx with ``dynamic``) with its inputs and
    onnxruntime's outputs; returns its manifest entry."""
    import onnx
    import onnxruntime as ort
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, inputs, output_names, dynamic_axes = make(name, batch, seed, tiny, **config)
    path = out / f"{name}.onnx"
    _export(model, inputs, output_names, path)
    if dynamic:
        _export(model, inputs, output_names, out / f"{name}_dyn.onnx", dynamic_axes)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)

    feeds = {k: v.numpy() for k, v in inputs.items()}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain reference
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    outs = sess.run(output_names, feeds)
    with torch.no_grad():
        ref = model(*inputs.values())
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    agree = max(float(np.max(np.abs(o - r.numpy())) / (np.max(np.abs(r.numpy())) + 1e-12))
                for o, r in zip(outs, ref))
    _save_npz(out / f"{name}.inputs.npz", feeds)
    _save_npz(out / f"{name}.outputs.npz", dict(zip(output_names, outs)))

    params = int(sum(p.numel() for p in model.parameters()))
    ops: dict[str, int] = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, {params / 1e6:.1f} M params, "
          f"{len(proto.graph.node)} nodes, onnxruntime vs torch rel. error {agree:.1e}", file=sys.stderr)
    return {"file": path.name, "inputs": _describe(proto.graph.input),
            "outputs": _describe(proto.graph.output), "batch": batch, "parameters": params,
            "nodes": len(proto.graph.node), "op_types": ops, "opset": OPSET, "seed": seed,
            "config": config_of(name, tiny, **config), "recipe": RECIPE_VERSION,
            "onnxruntime_vs_torch_relerr": agree, "dynamic_file": f"{name}_dyn.onnx" if dynamic else None}


def read_manifest(out) -> dict:
    path = Path(out) / "manifest.json"
    if not path.exists():
        return {"models": {}}
    with open(path) as f:
        return json.load(f)


def update_manifest(out, entries: dict) -> None:
    """Add entries to ``out``/manifest.json, keeping the other models' (written whole, then renamed)."""
    import onnx
    import onnxruntime
    import torch

    path = Path(out) / "manifest.json"
    manifest = read_manifest(out)
    manifest.setdefault("models", {}).update(entries)
    manifest["versions"] = {"torch": torch.__version__, "onnx": onnx.__version__,
                            "onnxruntime": onnxruntime.__version__}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)


def is_built(name: str, out, batch: int = 1, seed: int = 0, dynamic: bool = False) -> bool:
    """Whether ``out`` holds NAME's files, made by this recipe version with these settings."""
    out = Path(out)
    entry = read_manifest(out).get("models", {}).get(name)
    if not entry or (entry.get("recipe"), entry.get("batch"), entry.get("seed"), entry.get("config")) != \
            (RECIPE_VERSION, batch, seed, config_of(name)):
        return False
    files = [f"{name}.onnx", f"{name}.inputs.npz", f"{name}.outputs.npz"]
    if dynamic:
        if entry.get("dynamic_file") is None:
            return False
        files.append(entry["dynamic_file"])
    return all((out / f).exists() for f in files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(default_out()),
                    help="output folder, created (default: $EMBER_MODELS_DIR, else build/models)")
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), metavar="NAME",
                    help=f"build these models: {', '.join(MODELS)} (default: {', '.join(TEST_MODELS)})")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dynamic", action="store_true",
                    help="also write NAME_dyn.onnx with symbolic batch/height/width or batch/seq")
    ap.add_argument("--tiny", action="store_true",
                    help="small test configurations of vit, gpt2, t5_encoder and mobilevit; no manifest")
    ap.add_argument("--force", action="store_true", help="build even the models that are up to date")
    ap.add_argument("--check", action="store_true",
                    help="build nothing; exit 0 when every selected model is up to date, else 1")
    a = ap.parse_args(argv)
    names = a.only or TEST_MODELS
    if a.tiny:   # tiny models keep the full names: keep them out of a real model folder's manifest
        bad = [n for n in names if n not in TINY]
        if bad:
            ap.error(f"no tiny configuration for {', '.join(bad)}")
        for name in names:
            build(name, a.out, a.batch, a.seed, tiny=True, dynamic=a.dynamic)
        return 0
    todo = [n for n in names if a.force or not is_built(n, a.out, a.batch, a.seed, a.dynamic)]
    if a.check:
        if todo:
            print(f"not built in {a.out}: {', '.join(todo)}", file=sys.stderr)
        return 1 if todo else 0
    for name in todo:      # the manifest after each model: an interrupted run keeps what it made
        update_manifest(a.out, {name: build(name, a.out, a.batch, a.seed, dynamic=a.dynamic)})
    if len(todo) < len(names):
        print(f"up to date in {a.out}: {', '.join(n for n in names if n not in todo)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
