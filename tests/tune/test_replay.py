"""Tuning records replay schedules by their steps: a kernel lowered from the steps recorded under
some knobs is the kernel those knobs give (the same loop IR, the same outputs), for a matmul, a
convolution and an elementwise kernel; steps that do not fit fall back to the knobs, said.
``ember compile --tuning`` (and its old name ``--records``) and ``ember tune --show``."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.benchmark import random_inputs
from ember.cli import main
from ember.driver import records
from ember.driver.compile import generate, to_graph
from ember.driver.kernels import tuning_key
from ember.schedules.knobs import candidates
from ember.target import resolve
from ember.tir.printer import print_func

REPLAYED = "# schedule: replayed from the recorded steps\n"


def _model(kind: str) -> onnx.ModelProto:
    rng = np.random.default_rng(1)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    if kind == "matmul":
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        x, y, inits = [32, 64], [32, 48], [init("w", (64, 48))]
    elif kind == "conv":
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2]),
                 helper.make_node("Relu", ["c"], ["y"])]
        x, y, inits = [1, 16, 30, 30], [1, 32, 13, 13], [init("w", (32, 16, 5, 5)), init("b", (32,))]
    else:
        nodes = [helper.make_node("Add", ["x", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        x, y, inits = [1, 64, 32, 32], [1, 64, 32, 32], [init("b", (1, 64, 1, 1))]
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


#: the model, the kernel it is about (its lead op) and the knob set on it
CASES = {"matmul": ("matmul", ("matmul", "matmul_packed"), "matmul.rows"),
         "matmul_unroll": ("matmul", ("matmul", "matmul_packed"), "matmul.unroll"),
         "conv": ("conv", ("conv2d_nchwc",), "conv2d.rows"),
         "conv_unroll": ("conv", ("conv2d_nchwc",), "conv2d.unroll"),
         "elementwise": ("elementwise", ("add", "relu"), "parallel_min")}


def _text(f) -> str:
    return print_func(f).replace(REPLAYED, "")


def _kernel(cm, w):
    return next(f for f in cm.kernels if f.name == cm.workloads[w].groups[0])


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    """A model, its kernel of interest with a knob set off its default, and what that gives."""
    model, ops, knob = CASES[request.param]
    path = str(tmp_path_factory.mktemp("replay") / f"{model}.onnx")
    onnx.save(_model(model), path)
    tgt = resolve("cpu")
    untuned = generate(to_graph(path), tgt, kernel_knobs={})
    w = next(k for k, wl in untuned.workloads.items() if wl.op in ops and knob in wl.knobs)
    default = untuned.workloads[w].knobs[knob]
    value = 1 << 30 if knob == "parallel_min" else next(v for v in candidates(knob) if v != default)
    knobs = {knob: value}
    tuned = generate(to_graph(path), tgt, kernel_knobs={w: knobs})
    return path, w, knobs, untuned, tuned


def test_replayed_steps_give_the_kernel_of_their_knobs(case):
    path, w, knobs, untuned, tuned = case
    steps = tuned.workloads[w].steps
    assert steps and all(isinstance(st, list) for st in steps)
    replayed = generate(to_graph(path), resolve("cpu"), kernel_steps={w: steps})    # no knobs: the steps alone
    f = _kernel(replayed, w)
    assert f.attrs["schedule_replay"] == "replayed from the recorded steps"
    assert _text(f) == _text(_kernel(tuned, w))
    assert _text(f) != _text(_kernel(untuned, w))         # the knob made another kernel
    assert replayed.workloads[w].steps == steps


def test_compiling_with_records_replays_them_to_the_same_outputs(case, tmp_path):
    path, w, knobs, untuned, tuned = case
    key = tuning_key(resolve("cpu"))
    name = tuned.workloads[w].name
    with_steps, knobs_only = tmp_path / "t.sqlite", tmp_path / "t.jsonl"
    for f, steps in ((with_steps, True), (knobs_only, False)):
        records.append(f, w, key, name, untuned.workloads[w].knobs, "ok", 1.0, defaults=True,
                       steps=untuned.workloads[w].steps if steps else None)
        for ms in (0.5, 0.6):
            records.append(f, w, key, name, knobs, "ok", ms, base_ms=1.0,
                           steps=tuned.workloads[w].steps if steps else None)
    said = []
    replayed = ember.compile(path, tuning=with_steps, cache=False, progress=said.append)
    assert any("1 with schedule steps to replay" in s for s in said), said
    by_knobs = ember.compile(path, records=knobs_only, cache=False)          # the old name of the option
    plain = ember.compile(path, cache=False)
    feeds = random_inputs(plain, seed=3)
    got, want, ref = replayed.run(feeds), by_knobs.run(feeds), plain.run(feeds)
    for out in ref:
        np.testing.assert_array_equal(got[out], want[out])
        np.testing.assert_allclose(got[out], ref[out], rtol=1e-4, atol=1e-4)


def test_steps_that_do_not_fit_fall_back_to_the_knobs(case):
    path, w, knobs, untuned, tuned = case
    said = []
    cm = generate(to_graph(path), resolve("cpu"), kernel_knobs={w: knobs},
                  kernel_steps={w: [["no_such_stage", "split", "i0", 4]]}, progress=said.append)
    f = _kernel(cm, w)
    assert "do not replay" in f.attrs["schedule_replay"] and "no_such_stage" in f.attrs["schedule_replay"]
    assert any("do not replay" in s for s in said)
    assert _text(f).replace(f"# schedule: {f.attrs['schedule_replay']}\n", "") == _text(_kernel(tuned, w))


def test_cli_compile_tuning_and_show(case, tmp_path, capsys):
    path, w, knobs, untuned, tuned = case
    db = tmp_path / "cli.sqlite"
    key, name = tuning_key(resolve("cpu")), tuned.workloads[w].name
    records.append(db, w, key, name, untuned.workloads[w].knobs, "ok", 1.0, defaults=True)
    for ms in (0.5, 0.6):
        records.append(db, w, key, name, knobs, "ok", ms, base_ms=1.0, steps=tuned.workloads[w].steps)
    for flag in ("--tuning", "--records"):
        assert main(["compile", path, "-o", str(tmp_path / "m.ember"), flag, str(db)]) == 0
    assert main(["compile", path, "-o", str(tmp_path / "m.ember"), "--tuning", str(tmp_path / "none")]) == 1
    capsys.readouterr()
    assert main(["tune", "--show", name, "--tuning", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"workload {w}" in out and "chosen: 0.550" in out
    assert "knobs: " + ", ".join(f"{k}={v}" for k, v in knobs.items()) in out
    first = tuned.workloads[w].steps[0]
    assert f"  {first[0]}.{first[1]}({', '.join(map(str, first[2:]))})" in out
    assert "give the model" in out
    assert main(["tune", path, "--show", w[:8], "--tuning", str(db)]) == 0
    out = capsys.readouterr().out
    assert REPLAYED in out and _text(_kernel(tuned, w)) in out.replace(REPLAYED, "")
    assert main(["tune", "--show", "no_such_kernel", "--tuning", str(db)]) == 1
    assert "no kernel or workload 'no_such_kernel'" in capsys.readouterr().err
