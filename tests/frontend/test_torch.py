"""The PyTorch frontend: ATen ops and whole models through ``ember.from_torch`` and the compiler,
against torch eager on the same inputs; ``torch.compile(backend="ember")`` with and without ops
Ember lacks; every unsupported op listed at once."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ember  # noqa: E402
from ember.errors import UnsupportedOpError  # noqa: E402
from ember.frontend.torch import from_torch  # noqa: E402
from ember.graph import run_graph  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_models  # noqa: E402


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


def eager(model, args) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*args)
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in out]


def check(module, graph, model, args, tol=1e-4):
    got = list(module.run({v.name: a.numpy() for v, a in zip(graph.inputs, args)}).values())
    want = eager(model, args)
    assert len(got) == len(want)
    errs = []
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        errs.append(rel_error(g, w))
    assert max(errs) <= tol, errs
    return max(errs)


# ---- ops ----------------------------------------------------------------------------------------

class Ops(torch.nn.Module):
    """Many ATen ops in one small model: elementwise math and activations, type promotion,
    slicing and indexing, concatenation, reductions, padding, pooling, normalizations."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.dw = torch.nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.gn = torch.nn.GroupNorm(2, 6)
        self.conv1d = torch.nn.Conv1d(4, 5, 3, padding=1)
        self.register_buffer("table", torch.randn(10, 3))

    def forward(self, x, idx):
        y = self.conv(x)
        y = torch.nn.functional.hardswish(self.gn(self.dw(y))) + torch.nn.functional.silu(y)
        y = torch.nn.functional.avg_pool2d(y, 2, ceil_mode=True) * 0.5 - torch.nn.functional.max_pool2d(y, 2)
        y = torch.nn.functional.pad(y, (1, 0, 0, 2), value=0.25)
        z = y.flatten(2).transpose(1, 2)                         # [N, L, C]
        z = torch.cat([z[:, ::2], z[:, 1::2].flip(1)], dim=1).cumsum(1) / 7
        w = torch.where(z > 0, z.clamp(max=0.7), torch.nn.functional.leaky_relu(z, 0.2))
        s = w.softmax(-1) + w.log_softmax(-1).exp() + torch.var(w, dim=1, keepdim=True)
        s = s + self.table[idx, idx % 3].sum() + self.table[idx].mean(0)[:1]
        t = torch.roll(s, 1, 1).amax(-1) + s.argmax(-1).to(torch.float32) + (idx % 3 == 1).any().float()
        c = self.conv1d(x.flatten(2)[:, :, :9]).relu().tril(1).sum(-1)
        return s, t.triu() if t.dim() == 2 else t, c, (idx.cumsum(0) // 2)


def test_ops_match_torch():
    torch.manual_seed(0)
    model = Ops().eval()
    args = (torch.randn(2, 4, 8, 8), torch.tensor([1, 7, 3], dtype=torch.int64))
    graph = from_torch(model, args)
    # the reference interpreter and the compiled model both agree with torch
    for got, want in zip(run_graph(graph, {v.name: a.numpy() for v, a in zip(graph.inputs, args)}),
                         eager(model, args)):
        assert rel_error(got, want) <= 1e-5
    check(ember.compile(graph), graph, model, args, tol=1e-5)


class Attention(torch.nn.Module):
    """scaled_dot_product_attention: causal, with a boolean or an additive mask, grouped-query."""

    def forward(self, q, k, v, bias):
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        b = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias > 0)
        c = torch.nn.functional.scaled_dot_product_attention(q, k[:, :2], v[:, :2], attn_mask=bias, scale=0.3,
                                                             enable_gqa=True)
        return a + b + c


def test_scaled_dot_product_attention():
    from torch.export import Dim

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    bias = torch.randn(6, 6)
    bias[:, 0] = 1.0                                   # no row fully masked
    seq = Dim("seq", max=32)
    model = Attention().eval()
    graph = from_torch(model, (q, k, v, bias), dynamic_shapes=({2: seq}, {2: seq}, {2: seq}, {0: seq, 1: seq}))
    assert [str(d) for d in graph.inputs[0].shape] == ["2", "4", "seq", "8"]
    module = ember.compile(graph)
    check(module, graph, model, (q, k, v, bias))
    b2 = torch.randn(9, 9)
    b2[:, 0] = 1.0
    check(module, graph, model, (torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8), b2))


class Lacking(torch.nn.Module):
    def forward(self, x):
        a = torch.special.bessel_j0(x) + torch.special.bessel_j0(x * 2)
        return torch.special.i1(a) + x.relu()


def test_unsupported_ops_are_listed_at_once():
    with pytest.raises(UnsupportedOpError) as e:
        from_torch(Lacking(), (torch.randn(3),))
    err = e.value
    assert err.unsupported == {"aten.special_bessel_j0.default": ["special_bessel_j0", "special_bessel_j0_1"],
                               "aten.special_i1.default": ["special_i1"]}
    assert "E003" in str(err) and "PyTorch" in str(err)


def test_compile_takes_a_torch_module():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).eval()
    x = torch.randn(5, 8)
    module = ember.compile(model, example_args=(x,))
    got = module(x.numpy())
    assert rel_error(got, eager(model, (x,))[0]) <= 1e-5


def test_exported_program_saved_as_pt2(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
    x = torch.randn(1, 3, 6, 6)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    graph = from_torch(str(path))
    check(ember.compile(graph), graph, model, (x,), tol=1e-5)
    module = ember.compile(str(path))              # by its file type
    assert rel_error(module(x.numpy()), eager(model, (x,))[0]) <= 1e-5


# ---- torch.compile ------------------------------------------------------------------------------

class Mlp(torch.nn.Module):
    def __init__(self, lacking: bool):
        super().__init__()
        self.l1, self.l2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 8)
        self.lacking = lacking

    def forward(self, x):
        h = torch.relu(self.l1(x))
        if self.lacking:
            h = torch.special.bessel_j0(h)     # an op Ember lacks: runs in torch
        return self.l2(h).softmax(-1)


@pytest.mark.parametrize("lacking", [False, True])
def test_torch_compile_backend(lacking):
    from ember.frontend.torch_backend import EmberTorchWarning, register

    register()
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Mlp(lacking).eval()
    compiled = torch.compile(model, backend="ember")
    for batch in (4, 6):
        x = torch.randn(batch, 16)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                got = compiled(x)
        named = [str(w.message) for w in caught if issubclass(w.category, EmberTorchWarning)]
        if lacking and batch == 4:
            assert any("aten.special_bessel_j0.default" in m for m in named), named
        if not lacking:
            assert not named
        assert rel_error(got.numpy(), eager(model, (x,))[0]) <= 1e-5


# ---- whole models -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(torch_models.MODELS))
def test_model_matches_torch(name):
    """Each model compiled once with its open sizes symbolic, run at two sizes."""
    model, args, dynamic, other = torch_models.make(name)
    graph = from_torch(model, args, dynamic_shapes=dynamic)
    assert graph.symbols(), "the model's open sizes stay symbolic"
    module = ember.compile(graph)
    errs = [check(module, graph, model, a, tol=1e-4) for a in (args, other)]
    print(f"{name}: symbols {graph.symbols()}, max rel. error vs torch {max(errs):.1e}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "llama", "mobilenet_v2"])
def test_torch_compile_on_a_model(name):
    """torch.compile(backend="ember") at two input sizes (each compiled once)."""
    from ember.frontend.torch_backend import register

    register()
    torch._dynamo.reset()
    model, args, _, other = torch_models.make(name)
    compiled = torch.compile(model, backend="ember")
    for a in (args, other):
        with torch.no_grad():
            got = compiled(*a)
        assert rel_error(got.numpy(), eager(model, a)[0]) <= 1e-4


class Deconv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.up1d = torch.nn.ConvTranspose1d(4, 3, 4, stride=3, padding=2, dilation=2)

    def forward(self, x):
        return self.up(x), self.up1d(x.flatten(2))


def test_transposed_convolution():
    torch.manual_seed(0)
    model, x = Deconv().eval(), torch.randn(2, 4, 5, 7)
    graph = from_torch(model, (x,))
    check(ember.compile(graph), graph, model, (x,), tol=1e-5)


class HugePool(torch.nn.Module):
    """transformers' EfficientNet pooler: a window far larger than the map, in ceil mode."""

    def __init__(self):
        super().__init__()
        self.avg = torch.nn.AvgPool2d(2560, ceil_mode=True)
        self.max = torch.nn.MaxPool2d(640, ceil_mode=True)

    def forward(self, x):
        return self.avg(x), self.max(x)


def test_pool_window_past_the_input_is_clipped():
    torch.manual_seed(0)
    model, x = HugePool().eval(), torch.randn(2, 5, 7, 6)
    graph = from_torch(model, (x,))
    kernels = [tuple(n.attrs["kernel"]) for n in graph.nodes if n.op in ("avg_pool2d", "max_pool2d")]
    assert kernels == [(7, 6), (7, 6)]
    check(ember.compile(graph), graph, model, (x,), tol=1e-6)
