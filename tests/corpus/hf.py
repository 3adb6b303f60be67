"""The corpus's transformers models: each built from a configuration written here (small sizes, so
they export and compile quickly), random weights from a fixed seed, no download; exported with
open batch / sequence / image axes by both of torch's ONNX exporters (TorchScript,
``dynamo=False``, and torch.export, ``dynamo=True``).

``RECIPES`` maps a model name to a function returning (torch module, example inputs by name,
output names, open axes by input name {axis: symbol}).  The module returns plain tensors (the
wrapper picks ``last_hidden_state`` / ``logits`` out of transformers' output objects)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

OPSET = 17          # TorchScript exports; the dynamo exporter picks its own (18)
VOCAB = 1000


def _wrap(model, inputs, outputs, axes, pick):
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = self.model(**dict(zip(inputs, args)))
            return tuple(out[k] for k in pick) if len(pick) > 1 else out[pick[0]]

    return Wrapped().eval(), inputs, outputs, axes


def _tokens(batch=2, seq=16):
    import torch

    ids = torch.randint(0, VOCAB, (batch, seq), dtype=torch.int64)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[0, seq * 3 // 4:] = 0
    return ids, mask


TEXT_AXES = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
IMAGE_AXES = {"pixel_values": {0: "batch", 2: "height", 3: "width"}}
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def bert():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=VOCAB, max_position_embeddings=128, **SMALL))
    ids, mask = _tokens()
    return _wrap(model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state"],
                 TEXT_AXES, ["last_hidden_state"])


def roberta():
    from transformers import RobertaConfig, RobertaModel

    model = RobertaModel(RobertaConfig(vocab_size=VOCAB, max_position_embeddings=130, **SMALL))
    ids, mask = _tokens()
    ids = ids.clamp(min=2)              # ids 1 is the padding id (its position is not counted)
    return _wrap(model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state"],
                 TEXT_AXES, ["last_hidden_state"])


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    model = DistilBertModel(DistilBertConfig(vocab_size=VOCAB, max_position_embeddings=128, dim=64,
                                             n_layers=2, n_heads=4, hidden_dim=128))
    ids, mask = _tokens()
    return _wrap(model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state"],
                 TEXT_AXES, ["last_hidden_state"])


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=64, n_layer=2,
                                       n_head=4, use_cache=False,
                                       bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1))
    ids, mask = _tokens()
    return _wrap(model, {"input_ids": ids, "attention_mask": mask}, ["logits"], TEXT_AXES, ["logits"])


def gpt2_past():
    """GPT-2 decoding with its key/value cache: the new tokens, the mask over past and new
    positions, and each layer's past keys and values in; logits and the grown cache out."""
    from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel
    import torch

    layers, heads, past, head = 2, 4, 5, 16
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=64, n_layer=layers,
                                       n_head=heads, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1))

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):           # *args alone, like _wrap's (the dynamic shapes' layout)
            input_ids, attention_mask, *cache = args
            kv = DynamicCache([(cache[2 * i], cache[2 * i + 1]) for i in range(layers)])
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=kv,
                             use_cache=True)
            grown = out.past_key_values
            return (out.logits, *[t for layer in grown.layers for t in (layer.keys, layer.values)])

    ids, _ = _tokens(2, 3)
    inputs = {"input_ids": ids, "attention_mask": torch.ones(2, past + 3, dtype=torch.int64)}
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"}}
    outputs = ["logits"]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs[f"past_{kind}_{i}"] = torch.randn(2, heads, past, head)
            axes[f"past_{kind}_{i}"] = {0: "batch", 2: "past"}
            outputs.append(f"present_{kind}_{i}")
    return Step().eval(), inputs, outputs, axes


def llama():
    from transformers import LlamaConfig, LlamaModel

    model = LlamaModel(LlamaConfig(vocab_size=VOCAB, max_position_embeddings=128, num_key_value_heads=2,
                                   use_cache=False, **SMALL))
    ids, mask = _tokens()
    return _wrap(model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state"],
                 TEXT_AXES, ["last_hidden_state"])


def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    model = T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                    num_heads=4))
    ids, mask = _tokens()
    return _wrap(model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state"],
                 TEXT_AXES, ["last_hidden_state"])


def whisper_encoder():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    import torch

    # the encoder takes exactly 2 * max_source_positions frames: only the batch is open
    config = WhisperConfig(vocab_size=VOCAB, num_mel_bins=16, d_model=64, encoder_layers=2,
                           encoder_attention_heads=4, encoder_ffn_dim=128, decoder_layers=1,
                           decoder_attention_heads=4, decoder_ffn_dim=128, max_source_positions=32)
    feats = torch.randn(2, 16, 64)
    return _wrap(WhisperEncoder(config), {"input_features": feats}, ["last_hidden_state"],
                 {"input_features": {0: "batch"}}, ["last_hidden_state"])


def wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    import torch

    model = Wav2Vec2Model(Wav2Vec2Config(conv_dim=(32, 32, 32), conv_stride=(5, 2, 2),
                                         conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, **SMALL))
    audio = torch.randn(2, 1600)
    return _wrap(model, {"input_values": audio}, ["last_hidden_state"],
                 {"input_values": {0: "batch", 1: "samples"}}, ["last_hidden_state"])


def vit():
    from transformers import ViTConfig, ViTModel
    import torch

    # position embeddings for a 32x32 image: only the batch is open
    model = ViTModel(ViTConfig(image_size=32, patch_size=8, **SMALL), add_pooling_layer=False)
    return _wrap(model, {"pixel_values": torch.randn(2, 3, 32, 32)}, ["last_hidden_state"],
                 {"pixel_values": {0: "batch"}}, ["last_hidden_state"])


def convnext():
    from transformers import ConvNextConfig, ConvNextModel
    import torch

    model = ConvNextModel(ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1]))
    return _wrap(model, {"pixel_values": torch.randn(2, 3, 64, 64)}, ["pooler_output"], IMAGE_AXES,
                 ["pooler_output"])


def swin():
    from transformers import SwinConfig, SwinModel
    import torch

    model = SwinModel(SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1],
                                 num_heads=[2, 4], window_size=4))
    return _wrap(model, {"pixel_values": torch.randn(2, 3, 64, 64)}, ["pooler_output"], IMAGE_AXES,
                 ["pooler_output"])


def mobilevit():
    from transformers import MobileViTConfig, MobileViTModel
    import torch

    model = MobileViTModel(MobileViTConfig(image_size=64, hidden_sizes=[32, 48, 64],
                                           neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
                                           num_attention_heads=2, mlp_ratio=2.0))
    return _wrap(model, {"pixel_values": torch.randn(2, 3, 64, 64)}, ["pooler_output"], IMAGE_AXES,
                 ["pooler_output"])


RECIPES = {f.__name__: f for f in (bert, roberta, distilbert, gpt2, gpt2_past, llama, t5_encoder, whisper_encoder,
                                    wav2vec2, vit, convnext, swin, mobilevit)}
EXPORTERS = ("ts", "dynamo")


def export(name: str, exporter: str, path: Path, seed: int = 0) -> None:
    """Build recipe NAME with SEED and write it with EXPORTER ("ts" or "dynamo") to PATH (through a
    temporary file, renamed when complete)."""
    import torch

    torch.manual_seed(seed)
    model, inputs, outputs, axes = RECIPES[name]()
    args = tuple(inputs.values())
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "ts":
            torch.onnx.export(model, args, str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=list(inputs), output_names=outputs, dynamic_axes=axes)
        else:
            # one entry for the wrapper's *args, holding one per input
            shapes = (tuple({axis: torch.export.Dim.DYNAMIC for axis in axes.get(k, {})} for k in inputs),)
            program = torch.onnx.export(model, args, dynamo=True, input_names=list(inputs),
                                        output_names=outputs, dynamic_shapes=shapes, verbose=False)
            program.save(str(tmp))
            _rename_dims(tmp, axes)
    os.replace(tmp, path)


def _rename_dims(path: Path, axes) -> None:
    """The dynamo exporter names open sizes s0, s1, ... (also inside expressions such as "s1 + 1"
    in its value_info): give them the recipe's names (batch, seq), everywhere in the file."""
    import re

    import onnx

    proto = onnx.load(str(path))
    names = {}
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, symbol in axes.get(value.name, {}).items():
            if dims[axis].dim_param:
                names[dims[axis].dim_param] = symbol
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)], dim.dim_param)
    onnx.save(proto, str(path))
