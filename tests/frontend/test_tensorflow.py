"""The TensorFlow / Keras frontend against TensorFlow's own output: small tf.function graphs of
each op family, and Keras models (keras.applications with random weights, a small transformer),
each compiled once with an open batch and run at two batch sizes."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.errors import EmberError, ModelFileError, UnsupportedOpError

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed; install it with "
                                              "`pip install -e .[tensorflow]`")
keras = pytest.importorskip("keras")
L = keras.layers

CFLAGS = ("-O1",)       # the graphs are small; compile time matters more than speed here


def rel_error(out, ref) -> float:
    return float(np.abs(out.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-6))


def run(mod, xs):
    return list(mod.run(dict(zip(mod.input_names, xs))).values())


def check_function(fn, specs, make_inputs, batches=(1, 3), rtol=1e-5, reference=None):
    """``fn`` (a tf.function over ``specs``, batch open) translated, compiled once and run at
    each batch size against TensorFlow (``fn`` itself, or ``reference``: the same function in a
    form TensorFlow runs on this machine)."""
    graph = ember.from_tensorflow(fn.get_concrete_function(*specs))
    mod = ember.compile(graph, cflags=CFLAGS)
    for n in batches:
        xs = make_inputs(n)
        ref = (reference or fn)(*xs)
        refs = [np.asarray(r) for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
        outs = run(mod, xs)
        assert len(outs) == len(refs)
        for o, r in zip(outs, refs):
            assert o.shape == r.shape and o.dtype == r.dtype, (o.shape, r.shape, o.dtype, r.dtype)
            if r.dtype.kind in "biu":
                np.testing.assert_array_equal(o, r)
            else:
                err = rel_error(o, r)
                assert err <= rtol, f"batch {n}: relative error {err:.2e}"
    return graph


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def spec(*shape, dtype=tf.float32):
    return tf.TensorSpec((None,) + shape, dtype)


def test_conv_family_stays_nchw_and_matches():
    w = normal(3, 3, 4, 8, seed=1)
    dw = normal(3, 3, 8, 2, seed=2)
    scale, offset, mean, var = (normal(16, seed=3), normal(16, seed=4), normal(16, seed=5),
                                np.abs(normal(16, seed=6)) + 0.5)

    @tf.function
    def f(x):
        y = tf.nn.conv2d(x, w, strides=2, padding="SAME")
        y = tf.nn.relu6(y + normal(8, seed=7))
        y = tf.nn.depthwise_conv2d(y, dw, strides=[1, 1, 1, 1], padding="VALID")
        y = tf.nn.conv2d(y, normal(3, 3, 16, 16, seed=9), 1, padding="SAME", dilations=2)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, scale, offset, mean, var, is_training=False)
        a = tf.nn.max_pool2d(y, 3, 2, "SAME")
        b = tf.nn.avg_pool2d(y, 2, 2, "SAME")            # SAME average: the border window is smaller
        y = tf.concat([a, b], axis=3)
        y = tf.nn.conv2d(y, normal(1, 1, 32, 4, seed=8), 1, padding=[[0, 0], [1, 0], [0, 1], [0, 0]])
        return tf.reduce_mean(tf.nn.swish(y), axis=[1, 2], keepdims=True), tf.pad(y, [[0, 0], [1, 2], [0, 1], [0, 0]])

    g = check_function(f, [spec(13, 11, 4)], lambda n: [normal(n, 13, 11, 4, seed=n)])
    # the convolutions, pools and elementwise ops in between run in Ember's NCHW layout:
    # only the input, the concat's operands and the two outputs change layout
    assert sum(n.op == "transpose" for n in g.nodes) <= 3


def test_nchw_data_format_convs_and_pools():
    """Convolutions, pools, BiasAdd and FusedBatchNorm with data_format NCHW run on the tensors as
    TensorFlow holds them (Ember's own layout): no transpose at all."""
    w, dw = normal(3, 3, 4, 8, seed=1), normal(3, 3, 8, 2, seed=2)
    stats = (normal(16, seed=3), normal(16, seed=4), normal(16, seed=5), np.abs(normal(16, seed=6)) + 0.5)

    def model(x, fmt: str):
        # TensorFlow's own CPU kernels take NCHW only with oneDNN (on by default only on
        # processors with AVX-512 VNNI or newer): the reference is the same model in NHWC
        nchw = fmt == "NCHW"
        st = (lambda h, w_: [1, 1, h, w_]) if nchw else (lambda h, w_: [1, h, w_, 1])
        c = 1 if nchw else 3
        if not nchw:
            x = tf.transpose(x, [0, 2, 3, 1])
        y = tf.nn.conv2d(x, w, strides=st(2, 1), padding="SAME", data_format=fmt)
        y = tf.nn.relu(tf.nn.bias_add(y, normal(8, seed=7), data_format=fmt))
        y = tf.nn.depthwise_conv2d(y, dw, [1, 1, 1, 1], "VALID", data_format=fmt)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, *stats, is_training=False, data_format=fmt)
        a = tf.nn.max_pool2d(y, 3, st(2, 2), "SAME", data_format=fmt)
        b = tf.nn.avg_pool2d(y, 2, 2, "SAME", data_format=fmt)
        y = tf.nn.conv2d(tf.concat([a, b], axis=c), normal(1, 1, 32, 4, seed=8), 1, "VALID", data_format=fmt)
        return y if nchw else tf.transpose(y, [0, 3, 1, 2])

    f = tf.function(lambda x: model(x, "NCHW"))
    g = check_function(f, [spec(4, 13, 11)], lambda n: [normal(n, 4, 13, 11, seed=n)],
                       reference=tf.function(lambda x: model(x, "NHWC")))
    assert not any(n.op == "transpose" for n in g.nodes)


def test_space_to_batch_dilated_depthwise():
    """Keras' dilated DepthwiseConv2D (SpaceToBatchND -> depthwise -> BatchToSpaceND), and the two
    ops alone with paddings, crops, one spatial axis and a trailing one."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((11, 9, 3))
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", depth_multiplier=2)(inp)
    x = L.DepthwiseConv2D(3, dilation_rate=(3, 2), padding="valid")(x)
    model = keras.Model(inp, x)
    traced = tf.function(model).get_concrete_function(tf.TensorSpec((None, 11, 9, 3))).graph.as_graph_def()
    assert {"SpaceToBatchND", "BatchToSpaceND"} <= {n.op for n in traced.node}
    check_keras(model, lambda n: normal(n, 11, 9, 3, seed=n), rtol=1e-5)

    @tf.function
    def f(x):
        s = tf.space_to_batch_nd(x, [2, 3], [[1, 2], [0, 2]])                  # (6n, 4, 3, 2)
        t = tf.batch_to_space(s * 2.0, [2, 3], [[1, 0], [2, 1]])              # (n, 7, 6, 2)
        u = tf.space_to_batch_nd(tf.reshape(x, (-1, 5, 7 * 2)), [5], [[0, 0]])
        return t, tf.batch_to_space(u + 1.0, [5], [[1, 2]])

    check_function(f, [spec(5, 7, 2)], lambda n: [normal(n, 5, 7, 2, seed=n)])


def test_elementwise_and_activations():
    @tf.function
    def f(x, y):
        outs = [tf.nn.relu(x) - y, x * y / (tf.abs(y) + 1), tf.maximum(x, y), tf.minimum(x, 0.5),
                tf.math.squared_difference(x, y), tf.math.rsqrt(tf.abs(x) + 1), tf.square(x), tf.exp(-tf.abs(x)),
                tf.math.log(tf.abs(x) + 1), tf.sqrt(tf.abs(y)), tf.tanh(x), tf.sigmoid(x), tf.math.erf(x),
                tf.math.erfc(x), tf.nn.leaky_relu(x, 0.1), tf.nn.elu(x), tf.nn.selu(x), tf.nn.softplus(x * 3),
                tf.nn.gelu(x, approximate=True), tf.nn.gelu(x), tf.where(x > y, x, y * 2), tf.nn.softmax(x),
                tf.nn.log_softmax(y), tf.math.add_n([x, y, x]), tf.floor(x) + tf.math.ceil(y), tf.math.reciprocal(y), tf.math.floordiv(x, 0.3)]
        return tuple(outs) + (tf.cast(x > 0, tf.int32) + tf.cast(y, tf.int32),)   # each compared alone

    check_function(f, [spec(5, 7), spec(5, 7)], lambda n: [normal(n, 5, 7, seed=n), normal(n, 5, 7, seed=n + 9)])


def test_shapes_over_the_open_batch():
    """Shape -> StridedSlice -> Pack -> Reshape over the symbolic batch becomes a reshape to
    ``[batch, ...]``, not a computation at run time."""
    @tf.function
    def f(x):
        b = tf.shape(x)[0]
        flat = tf.reshape(x, tf.stack([b, -1]))
        parts = tf.reshape(flat, [-1, 2, 30])
        t = tf.transpose(parts, [0, 2, 1])
        s = x[:, 1:4:2, ..., tf.newaxis, -1]            # begin/end masks, ellipsis, new and shrink axes
        e = tf.expand_dims(tf.squeeze(x[:, :1], axis=1), 1)
        return (tf.reduce_sum(t, axis=-1), tf.reduce_max(flat, axis=1, keepdims=True), s,
                tf.slice(x, [0, 1, 2, 0], [-1, 2, 2, 3]), tf.tile(e, [1, 2, 1, 1]),
                tf.reduce_prod(tf.reshape(x, [b, 4, 15])[:, :, :3], axis=[2]))

    g = check_function(f, [spec(4, 5, 3)], lambda n: [normal(n, 4, 5, 3, seed=n)])
    assert str(g.inputs[0].type.shape[0]) == "batch"
    assert not any(n.op in ("arange", "bind_dims") for n in g.nodes)


def test_matmul_einsum_gather():
    w = normal(6, 4, seed=3)
    table = normal(20, 6, seed=4)

    @tf.function
    def f(x, ids):
        e = tf.gather(table, ids)                                    # (b, 5, 6)
        q = tf.einsum("bsd,dhk->bshk", e, normal(6, 2, 3, seed=5))
        k = tf.einsum("bsd,dhk->bshk", e + x, normal(6, 2, 3, seed=6))
        att = tf.einsum("bshk,bthk->bhst", q, k)
        o = tf.einsum("bhst,bthk->bshk", tf.nn.softmax(att), k)
        m = tf.matmul(tf.reshape(x, [-1, 6]), w)
        mt = tf.matmul(w, tf.reshape(x, [-1, 6]), transpose_a=True, transpose_b=True)
        bm = tf.linalg.matmul(e, e, adjoint_b=True)
        return o, m, mt, bm, tf.gather(x, [2, 0], axis=1)

    check_function(f, [spec(5, 6), spec(5, dtype=tf.int32)],
                   lambda n: [normal(n, 5, 6, seed=n), np.random.default_rng(n).integers(0, 20, (n, 5)).astype(np.int32)])


def test_unsupported_ops_listed_at_once():
    @tf.function
    def f(x):
        return tf.math.cumsum(tf.math.cumsum(x, axis=1), axis=1) + tf.math.top_k(x, 2).values[:, :1]

    with pytest.raises(UnsupportedOpError) as e:
        ember.from_tensorflow(f.get_concrete_function(spec(4)))
    msg = str(e.value)
    assert "Cumsum x2" in msg and "TopKV2 x1" in msg and "E003" in msg


def test_bad_inputs_raise_ember_errors(tmp_path):
    with pytest.raises(ModelFileError):
        ember.from_tensorflow(str(tmp_path / "no_such_dir"))
    with pytest.raises(ModelFileError):
        ember.from_keras(str(tmp_path / "no_such.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a keras file")
    with pytest.raises(ModelFileError):
        ember.from_keras(str(bad))
    with pytest.raises(EmberError):
        ember.from_tensorflow(tf.function(lambda x: x))       # not a concrete function


def test_damaged_graph_def_names_the_node():
    from ember.errors import InvalidModelError
    from ember.frontend.tensorflow import from_graph_def

    @tf.function
    def f(x):
        return tf.nn.relu(x) * 2.0

    gd = f.get_concrete_function(spec(3)).graph.as_graph_def()
    relu = next(n for n in gd.node if n.op == "Relu")
    relu.input[0] = "no_such_node"
    with pytest.raises(InvalidModelError) as e:
        from_graph_def(gd, [("x", "x", (None, 3))], [("Identity:0", "y")])
    assert relu.name in str(e.value)


# ---- Keras models ----------------------------------------------------------------------------

def check_keras(model, make_input, batches=(1, 3), rtol=1e-4, source=None, opt_level=3):
    """Ember (one artifact, open batch) against Keras' own output in inference mode."""
    graph = ember.from_keras(source if source is not None else model)
    assert str(graph.inputs[0].type.shape[0]) == "batch"
    mod = ember.compile(graph, opt_level=opt_level, cflags=CFLAGS)
    errs = []
    for n in batches:
        x = make_input(n)
        ref = np.asarray(model(x, training=False))
        (out,) = run(mod, [x])
        assert out.shape == ref.shape
        errs.append(rel_error(out, ref))
    print(f"{model.name}: relative errors {', '.join(f'{e:.2e}' for e in errs)}")
    assert max(errs) <= rtol, errs
    return graph


def calibrated(model, seed=0):
    """Random batch-norm scales and offsets, and moving statistics measured on one batch of
    random inputs (with Keras' initial statistics the activations of a deep network vanish and
    its output no longer depends on its input)."""
    rng = np.random.default_rng(seed)
    bns = [layer for layer in model._flatten_layers() if isinstance(layer, L.BatchNormalization)]
    momenta = []
    for layer in bns:
        c = layer.gamma.shape
        layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
        layer.beta.assign(rng.normal(0, 0.1, c).astype(np.float32))
        momenta.append(layer.momentum)
        layer.momentum = 0.0
    model(rng.uniform(-1, 1, (4,) + tuple(model.inputs[0].shape[1:])).astype(np.float32), training=True)
    for layer, m in zip(bns, momenta):
        layer.momentum = m
    return model


def images(size):
    return lambda n: np.random.default_rng(n).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def small_cnn():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(6, 1, activation="swish")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    return calibrated(keras.Model(inp, L.Dense(5, name="logits")(x)))


def test_keras_object_keras_file_and_h5(tmp_path):
    m = small_cnn()
    g = check_keras(m, images(12))
    assert ember.compile(m, cflags=CFLAGS).run({"image": images(12)(2)})["logits"].shape == (2, 5)
    assert [v.name for v in g.inputs] == ["image"] and g.outputs[0].name == "logits"
    m.save(tmp_path / "m.keras")
    check_keras(m, images(12), batches=(2,), source=str(tmp_path / "m.keras"))
    module = ember.compile(str(tmp_path / "m.keras"), cflags=CFLAGS)     # by file type
    np.testing.assert_allclose(run(module, [images(12)(2)])[0], m(images(12)(2), training=False), rtol=1e-4,
                               atol=1e-5)
    m.save(tmp_path / "m.h5")
    check_keras(m, images(12), batches=(2,), source=str(tmp_path / "m.h5"))


def test_command_line_info_and_compile(tmp_path, capsys):
    from ember.cli import main

    m = small_cnn()
    m.save(tmp_path / "m.keras")
    assert main(["info", str(tmp_path / "m.keras")]) == 0
    out = capsys.readouterr().out
    assert "format    Keras (the frozen TensorFlow graph)" in out and "conv2d" in out and "image" in out and "batch" in out
    assert main(["compile", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.ember")]) == 0
    x = images(12)(2)
    (y,) = run(ember.load(str(tmp_path / "m.ember")), [x])
    assert rel_error(y, np.asarray(m(x, training=False))) <= 1e-5


def test_saved_model_directory(tmp_path):
    m = small_cnn()
    m.export(str(tmp_path / "sm"), verbose=False)
    mod = ember.compile(str(tmp_path / "sm"), cflags=CFLAGS)       # a SavedModel directory by its files
    for n in (1, 2):
        x = images(12)(n)
        (out,) = run(mod, [x])
        assert rel_error(out, np.asarray(m(x, training=False))) <= 1e-5


def tiny_transformer():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), dtype="int32", name="tokens")
    x = L.Embedding(100, 32)(inp)
    a = L.MultiHeadAttention(4, 8)(x, x)
    x = L.LayerNormalization()(x + a)
    f = L.Dense(64, activation="gelu")(x)
    x = L.LayerNormalization()(x + L.Dense(32)(f))
    return keras.Model(inp, L.Dense(10)(x), name="tiny_transformer")


def test_keras_transformer():
    m = tiny_transformer()
    check_keras(m, lambda n: np.random.default_rng(n).integers(-100, 100, (n, 16)).astype(np.int32))


def test_keras_model_with_a_fixed_batch():
    """A Keras input of batch_size=1 has no open batch: no 'batch' symbol is planned for it."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), dtype="int32", batch_size=1)
    m = keras.Model(inp, L.Dense(3)(L.Embedding(100, 8)(inp)))
    mod = ember.compile(ember.from_keras(m))
    x = np.random.default_rng(0).integers(0, 100, (1, 16)).astype(np.int32)
    (out,) = run(mod, [x])
    assert rel_error(out, np.asarray(m(x, training=False))) <= 1e-5


# weights=None: random weights from the seed, nothing is downloaded; logits, not probabilities.
# All but MobileNetV2 compile at opt level 1 (the frontend is what is tested here; opt level 3 spends
# most of their CI time generating kernels MobileNetV2 exercises already).
APPLICATIONS = {
    "MobileNetV2": (dict(input_shape=(96, 96, 3), alpha=0.35), 3),
    "MobileNetV3Small": (dict(input_shape=(96, 96, 3), alpha=0.75), 1),
    "EfficientNetB0": (dict(input_shape=(64, 64, 3)), 1),
    "ResNet50": (dict(input_shape=(64, 64, 3)), 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_keras_applications(name):
    keras.utils.set_random_seed(0)
    kwargs, opt_level = APPLICATIONS[name]
    m = getattr(keras.applications, name)(weights=None, classes=10, classifier_activation=None, **kwargs)
    check_keras(calibrated(m), images(m.inputs[0].shape[1]), opt_level=opt_level)
