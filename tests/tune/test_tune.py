"""ember tune: the search space, the records file, measuring in child processes (crashes and hangs
skipped and recorded), replaying records, and a tuned model's outputs."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.benchmark import random_inputs
from ember.cli import _duration_arg
from ember.driver import records
from ember.driver.compile import generate, to_graph
from ember.driver.kernels import tuning_key
from ember.errors import EmberError, TargetError
from ember.schedules.knobs import check_kernel_knobs
from ember.target import asked_knobs, resolve
from ember.tune import Tuner
from ember.driver.records import frozen
from ember.tune.space import Space

HERE = Path(__file__).resolve().parent
#: the Gemm's outputs: two vectors of 16 floats, so it is blocked (with knobs) at any vector width
OUT = 32


def small_cnn() -> onnx.ModelProto:
    """Two 5x5 convolutions with ReLU and a Gemm: 1x8x16x16 -> 1x32 (5x5: direct convolutions with
    the ``conv2d.rows`` knob, where 3x3 ones would become Winograd's)."""
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[2, 2, 2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[2, 2, 2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUT])],
                              [init("w1", (16, 8, 5, 5)), init("b1", (16,)), init("w2", (16, 16, 5, 5)),
                               init("b2", (16,)), init("wg", (OUT, 16 * 16 * 16)), init("bg", (OUT,))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "small_cnn.onnx"
    onnx.save(small_cnn(), str(path))
    return str(path)


# ---- pieces ----------------------------------------------------------------------------------

def test_asked_knobs_lists_what_the_schedules_asked(model_file):
    cm = generate(to_graph(model_file), resolve("cpu"), kernel_knobs={})
    asked = {n for w in cm.workloads.values() for n in w.knobs}
    assert {"conv2d.rows", "matmul.rows"} <= asked
    assert "vector.lanes" not in asked          # model-wide: never tuned per kernel
    with asked_knobs() as seen:
        assert resolve("cpu").with_knobs({"pool.rows": 3}).knob("pool.rows", 7) == 3
    assert seen == {"pool.rows": 3}


def test_kernel_knobs_apply_to_one_kernel_only(model_file):
    graph, tgt = to_graph(model_file), resolve("cpu")
    base = generate(graph, tgt, kernel_knobs={})
    conv = next(k for k, w in base.workloads.items() if "conv2d.rows" in w.knobs)
    rows = 3 if base.workloads[conv].knobs["conv2d.rows"] != 3 else 2
    tuned = generate(to_graph(model_file), tgt, kernel_knobs={conv: {"conv2d.rows": rows}})
    assert tuned.workloads[conv].knobs["conv2d.rows"] == rows
    for k, w in base.workloads.items():
        if k != conv:
            assert tuned.workloads[k].knobs == w.knobs


def test_model_wide_knobs_are_refused_per_kernel():
    with pytest.raises(TargetError):
        check_kernel_knobs({"vector.lanes": 4})
    with pytest.raises(TargetError):
        check_kernel_knobs({"matmul.rows": 99})


def test_space_lists_valid_candidates():
    sp = Space({"conv2d.rows": 6, "conv2d.order": "rows", "vector.lanes": 8})
    assert sp.default == {"conv2d.order": "rows", "conv2d.rows": 6}
    assert sp.size == 2 * 16
    import random

    got = sp.sample(random.Random(0), 100, {frozen(sp.default)})
    assert len(got) == 31 and sp.default not in got
    for c in got:
        check_kernel_knobs(c)


def test_records_skip_torn_lines_and_choose_by_paired_ratio(tmp_path):
    f = tmp_path / "r.jsonl"
    records.append(f, "w1", "t", "k", {"matmul.rows": 3}, "ok", 2.0, defaults=True)
    for ms in (1.0, 1.1):
        records.append(f, "w1", "t", "k", {"matmul.rows": 5}, "ok", ms, base_ms=2.0)
    records.append(f, "w1", "t", "k", {"matmul.rows": 6}, "crash", None, "signal 6")
    for ms in (0.5, 0.5):
        records.append(f, "w1", "other", "k", {"matmul.rows": 7}, "ok", ms, base_ms=2.0)
    with open(f, "a") as fh:
        fh.write('{"v": 1, "workload": "w1", "tar')          # a tuner killed mid-write
    assert records.best(f, "t") == {"w1": {"matmul.rows": 5}}
    assert len(list(records.read(f))) == 6
    for ms in (0.2, 0.3):                                      # after the torn line
        records.append(f, "w1", "t", "k", {"matmul.rows": 8}, "ok", ms, base_ms=1.0)
    assert records.best(f, "t") == {"w1": {"matmul.rows": 8}}


def test_a_candidate_replaces_the_defaults_only_when_clearly_faster(tmp_path):
    f = tmp_path / "r.jsonl"
    records.append(f, "w", "t", "k", {"conv2d.rows": 6}, "ok", 1.0, defaults=True)
    for ms in (0.99, 0.98):
        records.append(f, "w", "t", "k", {"conv2d.rows": 4}, "ok", ms, base_ms=1.0)   # within the noise
    assert records.best(f, "t") == {"w": {"conv2d.rows": 6}}
    records.append(f, "w", "t", "k", {"conv2d.rows": 3}, "ok", 0.5, base_ms=1.0)
    assert records.best(f, "t") == {"w": {"conv2d.rows": 6}}               # fast once: luck, maybe
    records.append(f, "w", "t", "k", {"conv2d.rows": 3}, "ok", 0.9, base_ms=1.0)
    assert records.best(f, "t") == {"w": {"conv2d.rows": 3}}               # median ratio 0.7 of two
    for ms in (1.2, 1.3):
        records.append(f, "w", "t", "k", {"conv2d.rows": 3}, "ok", ms, base_ms=1.0)
    assert records.best(f, "t") == {"w": {"conv2d.rows": 6}}               # median of four: 1.05


def test_records_with_unknown_knobs_are_an_error(tmp_path, model_file):
    f = tmp_path / "r.jsonl"
    records.append(f, "w1", tuning_key(resolve("cpu")), "k", {"no.such": 1}, "ok", 1.0, defaults=True)
    with pytest.raises(EmberError, match="r.jsonl"):
        ember.compile(model_file, records=f, cache=False)
    with pytest.raises(EmberError, match="do not exist"):
        ember.compile(model_file, records=tmp_path / "missing.jsonl", cache=False)


def test_budget_durations():
    assert _duration_arg("10m") == 600 and _duration_arg("90") == 90 and _duration_arg("1h") == 3600
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        _duration_arg("soon")


@pytest.mark.parametrize("code,status", [("import os; os.abort()", "crash"),
                                         ("import time; time.sleep(60)", "timeout"),
                                         ("import sys; sys.exit(3)", "wrong")])
def test_a_failing_child_is_reported(tmp_path, model_file, code, status):
    from ember.tune.runners import run_trial

    got, detail = run_trial(tmp_path, {"model": model_file, "kernel_knobs": {"w": {"matmul.rows": 2}}}, timeout=3,
                            child=[sys.executable, "-c", code])
    assert got == status, detail


# ---- a whole tuning run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tuned(model_file, tmp_path_factory):
    """Tune with a child that crashes whenever a kernel's conv2d.rows is set."""
    rec = tmp_path_factory.mktemp("records") / "records.sqlite"
    lines = []
    # ended by its trial count, not the clock: enough trials to isolate the crashing candidate
    # (a batch of n kernels splits in halves: at most 1 + 2 log2(n) trials)
    t = Tuner(model_file, budget_s=1800, max_trials=10, records=rec, runs=3, final_rounds=1, say=lines.append,
              child=[sys.executable, str(HERE / "crashing_child.py")])
    return t.run(), rec, lines


def test_crashing_candidates_are_skipped_and_recorded(tuned):
    result, rec, lines = tuned
    all_recs = list(records.read(rec))
    crashed = [r for r in all_recs if r["status"] == "crash"]
    assert crashed and result.failures == len(crashed)
    assert all("conv2d.rows" in r["knobs"] and "signal" in r["detail"] for r in crashed)
    # everything else measured fine: the search went on around the crashes
    assert any(r["status"] == "ok" and not r["defaults"] for r in all_recs)
    assert any("skipped (crash" in line for line in lines)
    assert result.tuned_ms is not None           # the final check passed (no conv2d.rows set)


def test_records_replay_to_the_same_kernel_knobs(tuned, model_file):
    result, rec, _ = tuned
    tgt = resolve("cpu")
    best = records.replay_knobs(rec, tgt)
    assert set(best) == {k for k, kr in result.kernels.items() if kr.space.axes}
    untuned = generate(to_graph(model_file), tgt, kernel_knobs={})
    cm = generate(to_graph(model_file), tgt, kernel_knobs=best)
    for key, knobs in best.items():
        assert knobs == result.kernels[key].best
        # lowered with exactly the recorded knobs, and its own defaults for any a record leaves unset
        assert cm.workloads[key].knobs == {**untuned.workloads[key].knobs, **knobs}
    # every chosen record holds the steps of the schedule it was measured with: those replay to
    # the kernels the knobs give
    knobs, steps = records.replay_schedules(rec, tgt)
    assert knobs == best and set(steps) == set(best)
    assert all(steps[key] == cm.workloads[key].steps for key in best)
    replayed = generate(to_graph(model_file), tgt, kernel_steps=steps)
    by_name = {f.name: f for f in cm.kernels}
    for f in replayed.kernels:
        if f.attrs.get("schedule_replay"):
            assert f.attrs["schedule_replay"] == "replayed from the recorded steps"
            assert f.attrs["schedule_steps"] == by_name[f.name].attrs["schedule_steps"]


def test_tuned_outputs_equal_untuned(tuned, model_file):
    _, rec, _ = tuned
    plain = ember.compile(model_file)
    tuned_module = ember.compile(model_file, tuning=rec)
    feeds = random_inputs(plain, seed=1)
    want, got = plain.run(feeds), tuned_module.run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4)


def test_compile_cli_replays_records(tuned, model_file, tmp_path):
    from ember.cli import main

    _, rec, _ = tuned
    assert main(["compile", model_file, "-o", str(tmp_path / "m.ember"), "--records", str(rec)]) == 0
    assert main(["compile", model_file, "-o", str(tmp_path / "m.ember"), "--records", str(tmp_path / "none")]) == 1


def test_cost_model_learns_and_is_optional(monkeypatch):
    from ember.tune import costmodel

    pytest.importorskip("sklearn")
    model = costmodel.load()
    w = {"op": "conv2d_nchwc", "elements": 4096}
    default = {"conv2d.rows": 4, "conv2d.order": "rows"}
    for rows in range(1, 17):
        for order in ("rows", "channels"):
            model.add(w, default, {"conv2d.rows": rows, "conv2d.order": order}, (1.0 + abs(rows - 8) * 0.1) / 1.5)
    model.fit()
    cands = [{"conv2d.rows": r, "conv2d.order": "rows"} for r in (2, 8, 14)]
    pred = model.predict(w, default, cands)
    assert min(range(3), key=pred.__getitem__) == 1
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    assert costmodel.load() is None


def test_the_child_flags_outputs_that_differ(model_file, tmp_path):
    from ember.tune.measure import WRONG, measure

    ref = tmp_path / "ref.npz"
    np.savez(ref, y=np.full((1, OUT), 1e3, np.float32))
    with pytest.raises(SystemExit) as e:
        measure({"model": model_file, "runs": 1, "reference": str(ref), "drop_library": False})
    assert e.value.code == WRONG
    got = measure({"model": model_file, "runs": 2, "drop_library": False})
    assert got["ms"] and all(ms >= 0 for ms in got["ms"].values())
    assert set(got["ms"]) == set(got["workloads"])


def test_a_trial_leaves_the_compile_cache_as_it_found_it(model_file, tmp_path, monkeypatch):
    """A candidate's library is used once: it is not stored in the cache, and a cache entry the
    trial found (put there by another process, which may be loading it) is not removed."""
    from ember.driver.compile import build_library
    from ember.tune.measure import measure

    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    libs = tmp_path / "cache" / "lib"
    measure({"model": model_file, "runs": 1})
    assert not list(libs.glob("*.so"))
    tgt = resolve("cpu")
    entry = build_library(generate(to_graph(model_file), tgt, profile=True, kernel_knobs={}), "small_cnn", tgt, None,
                          lambda msg: None, ())
    assert entry.parent == libs
    at = tmp_path / "trial.so"
    got = measure({"model": model_file, "runs": 1, "library_at": str(at)})
    assert got["ms"] and entry.is_file() and not at.exists()
    assert [p.name for p in libs.glob("*.so")] == [entry.name]


# ---- the kernels' limits -----------------------------------------------------------------------

def test_kernel_cost_counts_what_any_schedule_must_do(model_file):
    from ember.graph.stats import count_flops

    cm = generate(to_graph(model_file), resolve("cpu"), kernel_knobs={})
    ws = list(cm.workloads.values())
    gemm = next(w for w in ws if w.op in ("matmul", "matmul_packed"))
    # the Gemm with its bias: 2*M*N*K, one add per output; it reads x and the weight, writes y
    assert 2 * OUT * 4096 <= gemm.flops <= 2 * OUT * 4096 + 2 * OUT
    assert gemm.bytes >= 4 * (4096 + OUT * 4096 + OUT)
    # the convolutions (channels padded to the vector width on some hosts: never fewer)
    onnx_convs = count_flops(ember.from_onnx(model_file)) - 2 * OUT * 4096
    convs = sum(w.flops * len(w.groups) for w in ws if w.op.startswith("conv2d"))
    assert convs >= 2 * 16 * 16 * 16 * 25 * (8 + 16)
    assert convs <= 4 * onnx_convs
    assert all(w.bytes > 0 for w in ws)       # static sizes: every kernel's bytes known


def test_bounds_and_verdicts():
    from ember.tune import roofline

    m = roofline.Machine(threads=2, fma_gflops=100.0, l1_gbs=200.0, l2_gbs=100.0, llc_gbs=50.0, memory_gbs=10.0,
                         l1_bytes=32 << 10, l2_bytes=512 << 10, llc_bytes=16 << 20)
    # 1 GFLOP, few bytes: 10 ms at the FMA peak
    lim = roofline.bound(10 ** 9, 1000, m)
    assert lim.binds == "FMA" and abs(lim.ms - 10.0) < 1e-9
    assert roofline.verdict(lim, 12.5, True, "conv2d_nchwc") == "at 80% of FMA peak: <= 1.25x left"
    # 100 MB, few operations: the part past the last-level cache comes from memory
    lim = roofline.bound(1000, 100 * 10 ** 6, m)
    assert lim.binds == "bytes" and lim.level == "memory"
    assert abs(lim.ms - (100e6 - (16 << 20)) / 10e9 * 1e3) < 1e-9
    # what fits the L1s moves at L1 speed at best; past them at L2 speed, past the L2s at L3 speed
    assert roofline.bound(0, 32 << 10, m).level == "L1"
    assert roofline.bound(0, 1 << 20, m).level == "L2"
    lim = roofline.bound(0, 8 << 20, m)
    assert lim.level == "L3" and abs(lim.ms - ((8 << 20) - (1 << 20)) / 50e9 * 1e3) < 1e-9
    text = roofline.verdict(roofline.bound(0, 1 << 20, m), 0.1, False, "winograd_input")
    assert text.startswith("not searched: no knobs (Winograd transform)") and "L2 bandwidth" in text
    assert roofline.verdict(None, 1.0, True, "matmul") == "no bound (symbolic sizes)"
    assert roofline.bound(0, 0, m) is None
    assert "at its bound" in roofline.verdict(roofline.bound(10 ** 9, 0, m), 5.0, True, "matmul")


def test_machine_limits_keep_the_highest_measured(tmp_path, monkeypatch):
    from ember.tune import roofline

    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    a = roofline.Machine(2, 100.0, 200.0, 90.0, 40.0, 10.0, 32768, 524288, 1 << 24)
    b = roofline.Machine(2, 80.0, 250.0, 80.0, 45.0, 12.0, 32768, 524288, 1 << 24)
    assert roofline.known("k") is None
    roofline.remember("k", a)
    got = roofline.remember("k", b)
    assert (got.fma_gflops, got.l1_gbs, got.l2_gbs, got.llc_gbs, got.memory_gbs) == (100.0, 250.0, 90.0, 45.0, 12.0)
    assert roofline.known("k", 2) == got and roofline.known("k") == got
    assert roofline.known("k", 4) is None and roofline.known("other") is None


def test_the_machine_is_measured():
    from ember.tune import roofline

    m = roofline.measure_machine(1)
    assert m.threads == 1 and min(m.fma_gflops, m.l1_gbs, m.l2_gbs, m.memory_gbs) > 0 and m.llc_gbs >= 0
    assert 0 < m.l1_bytes <= m.l2_bytes <= m.llc_bytes


def test_the_table_shows_each_kernels_bound_and_where_the_time_goes(tuned):
    result, _, _ = tuned
    assert result.machine is not None and result.machine.fma_gflops > 0
    table = result.table()
    header, *rows = table.splitlines()
    for col in ("untuned ms", "best ms", "tried", "bound ms", "% bound", "share", "verdict"):
        assert col in header
    for k in result.kernels.values():
        line = next(r for r in rows if r.startswith(k.workload["name"][:28]))
        assert result.limit(k) is not None and result.limit(k).ms > 0
        if k.space.size > 1:
            assert "not searched" not in line and ("% of" in line or "at its bound" in line)
        else:
            assert "not searched: no knobs" in line
    assert any(r.startswith("kernel time ") for r in rows)
    assert any(r.startswith("all kernels at their bounds: ") for r in rows)


def test_show_prints_the_kernels_bound(tuned, model_file):
    from ember.tune.show import show

    result, rec, _ = tuned
    searched = next(k for k in result.kernels.values() if k.space.axes)
    text = show(rec, searched.workload["name"], model_file)
    assert "bound: " in text and "times: defaults " in text


def test_a_gain_within_the_kernels_noise_does_not_replace_the_defaults():
    quiet = {frozen({"matmul.rows": 4}): [0.95, 0.94], frozen({"matmul.rows": 5}): [1.0, 1.01]}
    assert records.choose(quiet) == frozen({"matmul.rows": 4})          # 5.5% faster, noise 0.5%
    assert records.bar(quiet, 2) == 1.0 - records.MIN_GAIN
    # the same median gain where two measurements of one candidate differ by 30%
    busy = {frozen({"matmul.rows": 4}): [0.8, 1.09], frozen({"matmul.rows": 5}): [0.85, 1.15]}
    assert records.noise(busy) > 0.1 and records.bar(busy, 2) < 0.8
    assert records.choose(busy) is None
    # measured again (within the noise), and fast each time: it clears the bar of four
    busy[frozen({"matmul.rows": 4})] += [0.7, 0.72]
    assert records.choose(busy) == frozen({"matmul.rows": 4})


def test_a_gather_reads_only_the_rows_it_picks():
    from ember.driver.kernels import kernel_cost
    from ember.graph import GraphBuilder, TensorType
    from ember.passes.fusion import Group

    b = GraphBuilder("g")
    ids = b.input("ids", TensorType((4,), "int64"))
    table = b.const(np.zeros((1000, 64), np.float32))
    out = b.op("gather", [table, ids], name="pick", axis=0)
    g = b.finish([out])
    node = g.nodes[-1]
    group = Group("pick", [node], None, list(node.inputs), node.outputs[0])
    _, nbytes = kernel_cost(group)
    assert nbytes == 4 * 64 * 4 + 4 * 8 + 4 * 64 * 4          # the picked rows, the ids, the output
