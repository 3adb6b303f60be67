"""Small PyTorch models for the PyTorch frontend's tests: the plain-torch ResNet-50 and
MobileNetV2 of ``benchmarks/models.py`` (in smaller configurations) and transformers models built
from their configurations with random weights from a fixed seed (nothing is downloaded).

Each builder returns ``(module, example_args, dynamic_shapes, other_args)``: the module in eval
mode, the inputs it is exported with, torch.export's dynamic shapes (``Dim`` objects), and a
second set of inputs of other sizes that one compiled artifact must also run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench_models():
    spec = importlib.util.spec_from_file_location("ember_bench_models", ROOT / "benchmarks" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hf_models():
    spec = importlib.util.spec_from_file_location("ember_bench_hf_models", ROOT / "benchmarks" / "hf_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wrap(model, key):
    """``model`` with one tensor output (the field ``key`` of a transformers output)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x, mask=None):
            out = self.model(x) if mask is None else self.model(x, attention_mask=mask)
            return out if isinstance(out, torch.Tensor) else out[key]

    return Wrapped().eval()


def _dims(*names, max=64):
    from torch.export import Dim

    return [Dim(n, max=max) for n in names]


def _tokens(batch, seq, vocab=100):
    import torch

    return torch.randint(0, vocab, (batch, seq), dtype=torch.int64)


def resnet50():
    m, inp, _, _ = _bench_models().make("resnet50", blocks=[1, 1, 1, 1], image=64, classes=10)
    import torch

    (b,) = _dims("batch")
    return m, (inp["input"].repeat(2, 1, 1, 1),), ({0: b},), (torch.randn(3, 3, 64, 64),)


def mobilenet_v2():
    m, inp, _, _ = _bench_models().make("mobilenet_v2", image=64, classes=10)
    import torch

    (b,) = _dims("batch")
    return m, (inp["input"].repeat(2, 1, 1, 1),), ({0: b},), (torch.randn(3, 3, 64, 64),)


def bert():
    import torch
    import transformers as T

    m = _wrap(T.BertModel(T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64)), "last_hidden_state")
    b, s = _dims("batch", "seq")
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 5:] = 0
    mask2 = torch.ones(3, 11, dtype=torch.int64)
    mask2[0, 4:] = 0
    return m, (_tokens(2, 8), mask), ({0: b, 1: s}, {0: b, 1: s}), (_tokens(3, 11), mask2)


def gpt2():
    import transformers as T

    m = _wrap(T.GPT2LMHeadModel(T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, use_cache=False,
                                             bos_token_id=0, eos_token_id=0)), "logits")
    b, s = _dims("batch", "seq")
    return m, (_tokens(2, 8),), ({0: b, 1: s},), (_tokens(3, 11),)


def gpt2_kv_cache():
    """One step of GPT-2 decoding: new tokens and the past keys and values of every layer in,
    logits and the grown keys and values out."""
    import torch
    import transformers as T

    cfg = T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    step = _hf_models().decoding_step(T.GPT2LMHeadModel(cfg).eval(), cfg)
    b, s, p = _dims("batch", "seq", "past")
    kv = (2, 2, 4, 5, 8)
    kv2 = (2, 3, 4, 9, 8)
    return step, (_tokens(2, 3), torch.randn(kv), torch.randn(kv)), \
        ({0: b, 1: s}, {1: b, 3: p}, {1: b, 3: p}), (_tokens(3, 1), torch.randn(kv2), torch.randn(kv2))


def llama():
    """A Llama-style decoder with grouped-query attention (4 query heads, 2 key/value heads)."""
    import transformers as T

    m = _wrap(T.LlamaForCausalLM(T.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                               use_cache=False)), "logits")
    b, s = _dims("batch", "seq")
    return m, (_tokens(2, 8),), ({0: b, 1: s},), (_tokens(3, 11),)


def t5_encoder():
    import transformers as T

    m = _wrap(T.T5EncoderModel(T.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                          num_heads=4)), "last_hidden_state")
    b, s = _dims("batch", "seq")
    return m, (_tokens(2, 8),), ({0: b, 1: s},), (_tokens(3, 11),)


def whisper_encoder():
    import torch
    import transformers as T
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    m = _wrap(WhisperEncoder(T.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4,
                                             encoder_ffn_dim=64, num_mel_bins=16, max_source_positions=20)),
              "last_hidden_state")
    (b,) = _dims("batch")
    return m, (torch.randn(2, 16, 40),), ({0: b},), (torch.randn(3, 16, 40),)


def vit():
    import torch
    import transformers as T

    m = _wrap(T.ViTModel(T.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, image_size=32, patch_size=8)), "last_hidden_state")
    (b,) = _dims("batch")
    return m, (torch.randn(2, 3, 32, 32),), ({0: b},), (torch.randn(3, 3, 32, 32),)


def convnext():
    import torch
    import transformers as T

    m = _wrap(T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=64)),
              "pooler_output")
    (b,) = _dims("batch")
    return m, (torch.randn(2, 3, 64, 64),), ({0: b},), (torch.randn(3, 3, 64, 64),)


def efficientnet():
    import torch
    import transformers as T

    m = T.EfficientNetModel(T.EfficientNetConfig(image_size=64, width_coefficient=0.25, depth_coefficient=0.25,
                                                 hidden_dim=320))
    m = _wrap(_hf_models().trained_batch_norms(m), "pooler_output")
    (b,) = _dims("batch")
    return m, (torch.randn(2, 3, 64, 64),), ({0: b},), (torch.randn(3, 3, 64, 64),)


def swin():
    import torch
    import transformers as T

    m = _wrap(T.SwinModel(T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                       window_size=4)), "last_hidden_state")
    (b,) = _dims("batch")
    return m, (torch.randn(2, 3, 32, 32),), ({0: b},), (torch.randn(3, 3, 32, 32),)


MODELS = {f.__name__: f for f in (resnet50, mobilenet_v2, bert, gpt2, gpt2_kv_cache, llama, t5_encoder,
                                  whisper_encoder, vit, convnext, efficientnet, swin)}


def make(name: str, seed: int = 0):
    """Model ``name`` built with the given seed (its weights and inputs)."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    return MODELS[name]()
