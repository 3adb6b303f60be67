"""The TFLite frontend against TensorFlow's TFLite interpreter: small Keras / tf.function models
of each op family, and Keras' MobileNetV2 (random weights), each converted by the TFLite
converter as float32, with float16 weights and fully int8-quantized."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.errors import EmberError, ModelLoadError, UnsupportedOpError
from ember.frontend.tflite_files import read_model

tf = pytest.importorskip("tensorflow", reason="TensorFlow (the TFLite converter and interpreter) is not "
                                              "installed; install it with `pip install -e .[tensorflow]`")
keras = tf.keras

RNG = np.random.default_rng(0)


def convert(model, form: str, shape, seed: int = 0, tokens: int = 0) -> bytes:
    """A Keras model or tf.function converted as float32, with float16 weights, or fully
    int8-quantized (int8 input and output; a model of ``tokens`` int32 token ids keeps its int32
    input)."""
    if isinstance(model, keras.Model):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    else:                                   # a tf.function with an input signature
        conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    if form == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif form == "int8":
        rng = np.random.default_rng(seed)

        def data():
            for _ in range(8):
                if tokens:
                    yield [rng.integers(0, tokens, (1,) + tuple(shape[1:])).astype(np.int32)]
                else:
                    yield [rng.standard_normal((1,) + tuple(shape[1:])).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = data
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not tokens:
            conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def interpret(data: bytes, x: np.ndarray, reference_kernels: bool = False) -> np.ndarray:
    kw = {}
    if reference_kernels:
        kw["experimental_op_resolver_type"] = tf.lite.experimental.OpResolverType.BUILTIN_REF
    it = tf.lite.Interpreter(model_content=data, **kw)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def input_for(data: bytes, shape, seed=1):
    it = tf.lite.Interpreter(model_content=data)
    d = it.get_input_details()[0]
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if d["dtype"] == np.int8:
        s, z = d["quantization"]
        x = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
    return x


def run_ember(data: bytes, x: np.ndarray) -> np.ndarray:
    g = ember.from_tflite(data)
    m = ember.compile(g, target="cpu")
    return list(m.run({m.input_names[0]: x}).values())[0]


def check(model, shape, form="float32", rtol=1e-3, seed=0, data=None):
    """Ember's output against the interpreter's.  Int8 models must equal the output of TFLite's
    reference kernels bit for bit (the default optimized kernels round some steps differently);
    where those lack an op, the default kernels' output to one quantization step on under 1% of
    the elements."""
    data = data or convert(model, form, shape, seed)
    x = input_for(data, shape)
    exact = form == "int8"
    try:
        ref = interpret(data, x, reference_kernels=exact)
    except (RuntimeError, ValueError) as e:   # the reference kernels lack an op (e.g. TILE v3)
        print(f"reference kernels: {str(e).splitlines()[0]}; comparing with the default kernels")
        ref, exact = interpret(data, x), False
    out = run_ember(data, x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    if exact:
        np.testing.assert_array_equal(out, ref)
        return 0
    if form == "int8":
        diff = np.abs(out.astype(np.int32) - ref.astype(np.int32))
        print(f"int8: {(diff > 0).mean():.3%} of elements one step off the reference kernels")
        assert diff.max() <= 1, f"max {diff.max()} steps off"
        assert (diff > 0).mean() < 0.01, f"{(diff > 0).mean():.2%} of elements off by one step"
        return diff
    err = np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-6)
    print(f"{form}: relative error {err:.2e}")
    assert err <= rtol, f"relative error {err:.2e}"
    return err


def seq(shape, *layers):
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape[1:], batch_size=shape[0])
    y = inp
    for layer in layers:
        y = layer(y)
    return keras.Model(inp, y)


L = keras.layers
FORMS = ["float32", "float16", "int8"]


@pytest.mark.parametrize("form", FORMS)
def test_conv_pool_activation(form):
    m = seq((1, 20, 20, 3),
            L.Conv2D(8, 3, strides=2, padding="same", activation="relu6"),
            L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
            L.Conv2D(6, 3, padding="valid", dilation_rate=2),
            L.MaxPooling2D(2, padding="same"),
            L.AveragePooling2D(2, strides=1, padding="valid"),
            L.Flatten(), L.Dense(5), L.Softmax())
    check(m, (1, 20, 20, 3), form)


@pytest.mark.parametrize("form", FORMS)
def test_residual_concat_pad_mean(form):
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 4), batch_size=1)
    a = L.Conv2D(4, 1)(inp)
    b = L.Add()([a, inp])
    c = L.Concatenate()([b, L.Multiply()([a, inp])])
    d = L.ZeroPadding2D(((1, 2), (0, 1)))(c)
    e = L.Conv2D(3, 3, activation="tanh")(d)
    f = L.GlobalAveragePooling2D()(L.Activation("hard_swish")(e))
    check(keras.Model(inp, L.Activation("sigmoid")(f)), (1, 10, 10, 4), form)


@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
@pytest.mark.parametrize("form", ["float32", "int8"])
def test_resize(interp, form):
    # Keras' nearest UpSampling2D converts to TILE (which the reference kernels lack at its version);
    # Resizing converts to RESIZE_* with half pixel centers
    up = L.UpSampling2D((2, 3), interpolation=interp) if form == "float32" else L.Resizing(10, 21, interp)
    m = seq((1, 5, 7, 3), L.Conv2D(4, 1), up, L.Conv2D(2, 3))
    check(m, (1, 5, 7, 3), form)


@pytest.mark.parametrize("align,half", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_resize_modes(method, align, half):
    shape = (1, 5, 6, 2)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def f(x):
        if method == "bilinear":
            return tf.compat.v1.image.resize_bilinear(x, (9, 4), align_corners=align, half_pixel_centers=half)
        return tf.compat.v1.image.resize_nearest_neighbor(x, (11, 13), align_corners=align,
                                                          half_pixel_centers=half)

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    x = input_for(data, shape)
    np.testing.assert_allclose(run_ember(data, x), interpret(data, x), rtol=1e-5, atol=1e-5)


def ops_of(data: bytes) -> list:
    return read_model(data)[0].operators


def option(op, index: int, kind="i8") -> int:
    from flatbuffers import number_types as N

    return op.options.scalar(index, {"i8": N.Int8Flags, "i32": N.Int32Flags}[kind], 0)


@pytest.mark.parametrize("form", FORMS)
def test_depthwise_multipliers_strides_padding(form):
    # DEPTHWISE_CONV_2D options: padding 0, stride_w 1, stride_h 2, depth_multiplier 3
    shape = (1, 9, 11, 2)
    m = seq(shape, L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3),
            L.DepthwiseConv2D((2, 3), strides=(3, 1), padding="valid", depth_multiplier=2, activation="relu6"))
    data = convert(m, form, shape)
    dw = [op for op in ops_of(data) if op.op == "DEPTHWISE_CONV_2D"]
    assert [option(op, 0) for op in dw] == [0, 1] and [option(op, 3, "i32") for op in dw] == [3, 2]
    check(m, shape, form, data=data)


@pytest.mark.parametrize("form", FORMS)
def test_same_valid_padding_with_strides(form):
    shape = (1, 11, 13, 3)
    m = seq(shape, L.Conv2D(4, 3, strides=(2, 3), padding="same"), L.Conv2D(5, (4, 2), strides=(1, 2), padding="valid"),
            L.MaxPooling2D(3, strides=2, padding="same"), L.AveragePooling2D((1, 2), strides=(1, 1), padding="same"),
            L.Conv2D(3, 2, strides=2, padding="same", activation="relu"))
    check(m, shape, form)


@pytest.mark.parametrize("form", ["float32", "int8"])
def test_pools_with_fused_activations(form):
    # the converter fuses a ReLU / ReLU6 after a pool into its fused_activation_function (field 5)
    shape = (1, 10, 10, 4)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def f(x):
        y = tf.nn.relu(tf.nn.max_pool2d(x - 0.5, 3, 2, "SAME"))
        return tf.nn.relu6(tf.nn.avg_pool2d(y * 8.0 - 1.0, 2, 1, "VALID"))

    data = convert(f, form, shape)
    pools = {op.op: option(op, 5) for op in ops_of(data) if op.op.endswith("POOL_2D")}
    assert pools == {"MAX_POOL_2D": 1, "AVERAGE_POOL_2D": 3}, pools
    check(f, shape, form, data=data)


def test_float16_weights_dequantized():
    shape = (1, 6, 6, 3)
    m = seq(shape, L.Conv2D(4, 3, padding="same"), L.Conv2DTranspose(2, 3, strides=2), L.Flatten(), L.Dense(3))
    data = convert(m, "float16", shape)
    sg = read_model(data)[0]
    dq = [op for op in sg.operators if op.op == "DEQUANTIZE"]
    assert len(dq) >= 3 and all(sg.tensors[op.inputs[0]].dtype == "float16" for op in dq)
    check(m, shape, "float16", rtol=1e-5, data=data)


@pytest.mark.parametrize("form", FORMS)
def test_transpose_conv(form):
    shape = (1, 5, 4, 3)
    m = seq(shape, L.Conv2DTranspose(4, 3, strides=2, padding="same"),
            L.Conv2DTranspose(2, (2, 3), strides=(1, 2), padding="valid", activation="relu"))
    data = convert(m, form, shape)
    assert sum(op.op == "TRANSPOSE_CONV" for op in ops_of(data)) == 2
    check(m, shape, form, data=data)


def test_transpose_conv_l2norm():
    m = seq((1, 5, 5, 3), L.Conv2DTranspose(4, 3, strides=2, padding="same"),
            L.Conv2DTranspose(2, 2, strides=1, padding="valid"),
            L.UnitNormalization(axis=-1))
    check(m, (1, 5, 5, 3))


def test_l2_normalization_activations():
    shape = (1, 4, 4, 6)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def f(x):
        y = tf.math.l2_normalize(x, axis=-1)
        # (the exact GELU of tf.nn is Erfc, which the converter refuses; Keras' is in the transformer)
        return tf.concat([tf.nn.relu6(y * 4.0), tf.tanh(x) - tf.sigmoid(x), tf.nn.gelu(x, approximate=True),
                          tf.nn.leaky_relu(x, 0.3)], axis=-1)

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    x = input_for(data, shape)
    assert {"L2_NORMALIZATION", "GELU", "LEAKY_RELU"} <= {op.op for op in read_model(data)[0].operators}
    np.testing.assert_allclose(run_ember(data, x), interpret(data, x), rtol=1e-5, atol=1e-6)


def test_tensor_ops():
    shape = (2, 6, 4)
    w = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def f(x):
        y = tf.transpose(x, (0, 2, 1))                  # 2, 4, 6
        y = y[:, 1:, ::2]                               # 2, 3, 3
        y = tf.reshape(y, (2, 9))
        z = tf.matmul(x, w)                             # batch matmul 2, 6, 5
        z = tf.gather(z, [4, 0, 2], axis=1)             # 2, 3, 5
        z = tf.squeeze(tf.reduce_mean(z[:, :, None, :], axis=1, keepdims=True), 2)
        return tf.concat([y, tf.reshape(z, (2, 5)) / 3.0 - 1.0], axis=1)

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    x = input_for(data, shape)
    np.testing.assert_allclose(run_ember(data, x), interpret(data, x), rtol=1e-4, atol=1e-5)


def int8_function(f, shape, data_fn) -> bytes:
    """A tf.function of one float input, fully int8-quantized with ``data_fn(rng)`` as its
    representative data."""
    g = tf.function(f, input_signature=[tf.TensorSpec(shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([g.get_concrete_function()], g)
    rng = np.random.default_rng(0)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([data_fn(rng).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def every_int8(data: bytes, at_least_zero_point: bool = False) -> np.ndarray:
    """The model's int8 input filled with every int8 value in turn (those at or above the input's
    zero point only: the real values >= 0)."""
    d = tf.lite.Interpreter(model_content=data).get_input_details()[0]
    v = np.arange(-128, 128)
    if at_least_zero_point:
        v = v[v >= d["quantization"][1]]
    return np.resize(v, int(np.prod(d["shape"]))).reshape(tuple(d["shape"])).astype(np.int8)


def assert_reference_kernels(data: bytes, x: np.ndarray, op: str):
    assert op in {o.op for o in read_model(data)[0].operators}
    np.testing.assert_array_equal(run_ember(data, x), interpret(data, x, reference_kernels=True))


@pytest.mark.parametrize("approximate", [True, False])
def test_int8_rsqrt_gelu_tables_match_every_input(approximate):
    """RSQRT (TFLite's fixed-point inverse square root) and GELU (its float lookup table) over
    every int8 input value."""
    shape = (1, 16, 16)
    data = int8_function(tf.math.rsqrt, shape, lambda r: np.abs(r.standard_normal(shape)) * 3 + 0.05)
    assert_reference_kernels(data, every_int8(data, at_least_zero_point=True), "RSQRT")
    gelu = (lambda x: tf.nn.gelu(x, approximate=True)) if approximate else keras.activations.gelu
    try:
        data = int8_function(gelu, shape, lambda r: r.standard_normal(shape) * 3)
    except Exception as e:          # the converter refuses the exact GELU (Erfc) in some versions
        pytest.skip(f"the converter refuses this GELU: {str(e).splitlines()[0]}")
    if "GELU" not in {o.op for o in read_model(data)[0].operators}:
        pytest.skip("the converter decomposed this GELU")
    assert_reference_kernels(data, every_int8(data), "GELU")


@pytest.mark.parametrize("shape,beta,gain", [((2, 8, 40), 3.0, 1), ((2, 1000), 5.0, 1), ((4, 16, 3), 0.3, 1),
                                             ((3, 300), 1.0, 4)])
def test_int8_softmax_matches_reference_kernels(shape, beta, gain):
    """TFLite's reference int8 softmax (gemmlowp's fixed-point exp of the distance to the row's
    maximum, the exact sum, its fixed-point reciprocal), on rows of 3 to 1000 values, steep and
    flat."""
    data = int8_function(lambda x: tf.nn.softmax(x * beta), shape, lambda r: r.standard_normal(shape))
    x = np.clip(input_for(data, shape).astype(np.int32) * gain, -128, 127).astype(np.int8)
    assert_reference_kernels(data, x, "SOFTMAX")


@pytest.mark.parametrize("shape,offset,gain", [((2, 8, 40), 0.0, 1), ((2, 3000), 1.0, 20), ((64, 2), 0.0, 1)])
def test_int8_l2_normalization_matches_reference_kernels(shape, offset, gain):
    """TFLite's int8 L2 normalization: the exact sum of squares per row and its fixed-point
    inverse square root (the float form misses by a step on wide rows of large values)."""
    data = int8_function(lambda x: tf.math.l2_normalize(x + offset, axis=-1), shape,
                         lambda r: r.standard_normal(shape))
    x = np.clip(input_for(data, shape).astype(np.int32) * gain, -128, 127).astype(np.int8)
    assert_reference_kernels(data, x, "L2_NORMALIZATION")



@pytest.mark.parametrize("axes,keep", [((1,), False), ((0, 2), True), ((2,), True)])
def test_reduce_prod(axes, keep):
    """REDUCE_PROD in float32, and in int8 as TFLite's integer kernel (the running product
    rescaled after every multiplication), over one axis and over two."""
    shape = (2, 3, 4)
    f = tf.function(lambda x: tf.reduce_prod(x, axis=axes, keepdims=keep),
                    input_signature=[tf.TensorSpec(shape, tf.float32)])
    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    assert "REDUCE_PROD" in {o.op for o in read_model(data)[0].operators}
    x = np.random.default_rng(3).uniform(0.3, 1.7, shape).astype(np.float32)
    np.testing.assert_allclose(run_ember(data, x), interpret(data, x), rtol=1e-5)
    data = int8_function(lambda x: tf.reduce_prod(x, axis=axes, keepdims=keep), shape,
                         lambda r: r.uniform(-1.7, 1.7, shape))
    rng = np.random.default_rng(4)
    for _ in range(4):
        assert_reference_kernels(data, rng.integers(-128, 128, shape).astype(np.int8), "REDUCE_PROD")


def mobilenet_v2(size: int):
    """Keras' MobileNetV2 with random weights and batch-norm statistics measured on random images,
    layer by layer (with Keras' initial statistics the activations vanish with depth)."""
    keras.utils.set_random_seed(0)
    m = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None, classes=10, alpha=0.35,
                                       classifier_activation=None)
    x = np.random.default_rng(2).standard_normal((4, size, size, 3)).astype(np.float32)
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            h = keras.Model(m.inputs, layer.input)(x).numpy()
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2)) + 1e-3])
    return m


#: the int8 form's fused convolution + ADD kernels carry TFLite's requantization, a DAG of shared
#: terms: 68 s on 2 cores since the passes walk it as a DAG (about 220 s when inlining copied
#: the shared terms into a tree)
@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_mobilenet_v2(form):
    check(mobilenet_v2(64), (1, 64, 64, 3), form)


def test_compiled_by_file_type(tmp_path, capsys):
    """A .tflite path goes to this frontend by its suffix: ember.compile, `ember info` and
    `ember run` (which compiles it first)."""
    from ember.cli import main

    m = seq((1, 8, 8, 3), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(5))
    data = convert(m, "float32", (1, 8, 8, 3))
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    x = input_for(data, (1, 8, 8, 3))
    mod = ember.compile(str(path))
    out = list(mod.run({mod.input_names[0]: x}).values())[0]
    np.testing.assert_allclose(out, interpret(data, x), rtol=1e-4, atol=1e-5)
    assert main(["info", str(path)]) == 0
    assert "format    TFLite" in capsys.readouterr().out
    with pytest.raises(EmberError, match="shapes= applies to ONNX models; a TFLite model"):
        ember.compile(str(path), shapes={"x": (2, 8, 8, 3)})


def test_unsupported_ops_listed_at_once():
    shape = (1, 8)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def f(x):
        return tf.math.cumsum(tf.math.floor(x) + tf.math.floor(x * 2), axis=1)

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    with pytest.raises(UnsupportedOpError) as e:
        ember.from_tflite(data)
    assert "FLOOR x2" in str(e.value) and "CUMSUM x1" in str(e.value)


def test_damaged_models():
    m = seq((1, 4), L.Dense(3))
    data = convert(m, "float32", (1, 4))
    with pytest.raises(ModelLoadError):
        ember.from_tflite(b"not a model")
    for cut in (16, len(data) // 2):
        with pytest.raises(EmberError):
            ember.from_tflite(data[:cut])
    with pytest.raises(EmberError):
        ember.from_tflite(os.path.join(os.path.dirname(__file__), "no_such.tflite"))


def interpret_batch(data: bytes, x: np.ndarray, reference_kernels: bool = False) -> np.ndarray:
    """The interpreter's output with its input resized to ``x``'s shape."""
    kw = {}
    if reference_kernels:
        kw["experimental_op_resolver_type"] = tf.lite.experimental.OpResolverType.BUILTIN_REF
    it = tf.lite.Interpreter(model_content=data, **kw)
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def open_batch_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))                       # batch None: -1 in the shape signature
    y = L.MaxPooling2D(2, padding="same")(L.Conv2D(4, 3, activation="relu")(inp))
    return keras.Model(inp, L.Dense(3)(L.Flatten()(y)))     # Flatten: SHAPE, STRIDED_SLICE, PACK


def test_open_batch_fixed_at_translation():
    data = convert(open_batch_model(), "float32", (1, 6, 6, 2))
    x = np.random.default_rng(4).standard_normal((3, 6, 6, 2)).astype(np.float32)
    mod = ember.compile(ember.from_tflite(data, batch=3))
    out = list(mod.run({mod.input_names[0]: x}).values())[0]
    np.testing.assert_allclose(out, interpret_batch(data, x), rtol=1e-4, atol=1e-5)


def test_open_batch_stays_symbolic():
    data = convert(open_batch_model(), "float32", (1, 6, 6, 2))
    assert list(read_model(data)[0].tensors[read_model(data)[0].inputs[0]].shape_signature) == [-1, 6, 6, 2]
    g = ember.from_tflite(data)
    assert str(g.inputs[0].type.shape[0]) == "batch"
    mod = ember.compile(g)
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 6, 6, 2)).astype(np.float32)
        out = list(mod.run({mod.input_names[0]: x}).values())[0]
        assert out.shape == (n, 3)
        np.testing.assert_allclose(out, interpret_batch(data, x), rtol=1e-4, atol=1e-5)



def test_open_batch_dense_on_sequences():
    """Dense on a batch of sequences converted with an open batch: TFLite's Tensordot reshapes by
    SHAPE, GATHER and REDUCE_PROD of the symbolic sizes (folded at translation), float32 and int8."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 8))
    m = keras.Model(inp, L.Dense(3)(L.Dense(6, activation="relu")(inp)))
    for form in ("float32", "int8"):
        data = convert(m, form, (1, 5, 8))
        assert "REDUCE_PROD" in {o.op for o in read_model(data)[0].operators}
        mod = ember.compile(ember.from_tflite(data))
        for n in (1, 3):
            x = input_for(data, (n, 5, 8), seed=n)
            out = list(mod.run({mod.input_names[0]: x}).values())[0]
            if form == "int8":
                np.testing.assert_array_equal(out, interpret_batch(data, x, reference_kernels=True))
            else:
                np.testing.assert_allclose(out, interpret_batch(data, x), rtol=1e-4, atol=1e-5)


def test_mutated_models_raise_ember_errors():
    m = seq((1, 8, 8, 3), L.Conv2D(4, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(), L.Dense(3))
    data = convert(m, "int8", (1, 8, 8, 3))
    rng = np.random.default_rng(0)
    for _ in range(300):
        d = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            d[rng.integers(0, len(d))] = rng.integers(0, 256)
        try:
            ember.from_tflite(bytes(d))
        except EmberError:
            pass
