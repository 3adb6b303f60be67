"""transformers models for benchmarks/torch_frontend.py, built from their configurations with
random weights from a fixed seed (nothing is downloaded), at the sizes they are used at (``tiny``:
the same code at a few hundred parameters per layer, for the benchmark's own test).

Each builder takes ``tiny`` and returns ``(module in eval mode, example inputs)``; every module
returns one tensor or a tuple of tensors."""

from __future__ import annotations


def _wrap(model, key):
    """``model`` returning only the field ``key`` of its transformers output."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(*args)[key]

    return Wrapped().eval()


def trained_batch_norms(model, seed: int = 1):
    """Batch-norm scales and statistics of a typical trained net (transformers initializes the
    scales so that a deep random net's output vanishes)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
    return model


def _tokens(vocab, seq):
    import torch

    return torch.randint(0, vocab, (1, seq), dtype=torch.int64)


def _image(size):
    import torch

    return torch.randn(1, 3, size, size)


def bert(tiny=False):
    """BERT-base, sequence 128 (ids and attention mask)."""
    import torch
    import transformers as T

    cfg = (T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64) if tiny else T.BertConfig())
    seq = 8 if tiny else 128
    return _wrap(T.BertModel(cfg), "last_hidden_state"), (_tokens(cfg.vocab_size, seq),
                                                          torch.ones(1, seq, dtype=torch.int64))


def decoding_step(model, cfg):
    """One decoding step of a transformers causal LM: new tokens and the past keys and values of
    every layer (stacked) in, logits and the grown keys and values out."""
    import torch
    from transformers.cache_utils import DynamicCache

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, past_keys, past_values):
            cache = DynamicCache(config=cfg)
            for i in range(past_keys.shape[0]):
                cache.update(past_keys[i], past_values[i], i)
            out = self.model(ids, past_key_values=cache, use_cache=True)
            layers = out.past_key_values.layers
            return out.logits, torch.stack([x.keys for x in layers]), torch.stack([x.values for x in layers])

    return Step().eval()


def gpt2_kv_cache(tiny=False):
    """GPT-2 small, one decoding step: one new token after 64 past tokens in the key/value cache;
    logits and the grown keys and values out."""
    import torch
    import transformers as T

    cfg = (T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0) if tiny
           else T.GPT2Config())
    kv = (cfg.n_layer, 1, cfg.n_head, 8 if tiny else 64, cfg.n_embd // cfg.n_head)
    return decoding_step(T.GPT2LMHeadModel(cfg), cfg), (_tokens(cfg.vocab_size, 1), torch.randn(kv), torch.randn(kv))




def llama(tiny=False):
    """A Llama-style decoder with grouped-query attention: width 512, 8 layers, 8 query heads
    sharing 2 key/value heads, vocabulary 32000, sequence 128, logits out."""
    import transformers as T

    size = (dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2) if tiny else
            dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                 num_attention_heads=8, num_key_value_heads=2))
    cfg = T.LlamaConfig(use_cache=False, **size)
    return _wrap(T.LlamaForCausalLM(cfg), "logits"), (_tokens(cfg.vocab_size, 8 if tiny else 128),)


def t5_encoder(tiny=False):
    """T5-small's encoder, sequence 128."""
    import transformers as T

    cfg = (T.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4) if tiny
           else T.T5Config())
    return _wrap(T.T5EncoderModel(cfg), "last_hidden_state"), (_tokens(cfg.vocab_size, 8 if tiny else 128),)


def whisper_encoder(tiny=False):
    """Whisper-tiny's encoder on 30 s of audio (80 mel bins x 3000 frames)."""
    import torch
    import transformers as T
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = (T.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                           num_mel_bins=16, max_source_positions=20) if tiny else
           T.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536))
    frames = 2 * cfg.max_source_positions
    return _wrap(WhisperEncoder(cfg), "last_hidden_state"), (torch.randn(1, cfg.num_mel_bins, frames),)


def vit(tiny=False):
    """ViT-B/16 at 224x224."""
    import transformers as T

    cfg = (T.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=8) if tiny else T.ViTConfig())
    return _wrap(T.ViTModel(cfg, add_pooling_layer=False), "last_hidden_state"), (_image(cfg.image_size),)


def convnext(tiny=False):
    """ConvNeXt-tiny at 224x224 (pooled features)."""
    import transformers as T

    cfg = (T.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]) if tiny else T.ConvNextConfig())
    return _wrap(T.ConvNextModel(cfg), "pooler_output"), (_image(64 if tiny else 224),)


def efficientnet(tiny=False):
    """transformers' default EfficientNet configuration (EfficientNet-B7's widths and depths) at
    224x224 (pooled features)."""
    import transformers as T

    cfg = (T.EfficientNetConfig(image_size=64, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320)
           if tiny else T.EfficientNetConfig(image_size=224))
    return _wrap(trained_batch_norms(T.EfficientNetModel(cfg)), "pooler_output"), (_image(cfg.image_size),)


def swin(tiny=False):
    """Swin-tiny (patch 4, window 7) at 224x224."""
    import transformers as T

    cfg = (T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
           if tiny else T.SwinConfig())
    return _wrap(T.SwinModel(cfg), "last_hidden_state"), (_image(cfg.image_size),)


MODELS = {f.__name__: f for f in (vit, convnext, efficientnet, swin, bert, gpt2_kv_cache, t5_encoder,
                                  whisper_encoder, llama)}


def make(name: str, tiny: bool = False, seed: int = 0):
    """Model ``name`` and its example inputs, seeded: the same weights and inputs on every call."""
    import torch

    torch.manual_seed(seed)
    return MODELS[name](tiny)
