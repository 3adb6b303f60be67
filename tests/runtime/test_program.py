"""Programs: models with host steps (strings) as compiled segments and host kernels, their
partition, running, saving and loading."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP, helper
from onnx.reference import ReferenceEvaluator

import ember
from ember.driver.program import needs_program, partition
from ember.errors import ArtifactError, EmberError, InputError
from ember.graph import run_graph
from ember.graph.text import parse_graph
from ember.runtime import LoadedModel, Module, ProgramModule, is_program, load


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield


def S(*items) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = list(items)
    return arr


def mixed_model():
    """string -> StringNormalizer -> LabelEncoder -> int64 -> Mul, Add (compiled) -> int64 output,
    and back to strings through a second LabelEncoder."""
    nodes = [
        helper.make_node("StringNormalizer", ["x"], ["xn"], case_change_action="LOWER", stopwords=["the"]),
        helper.make_node("LabelEncoder", ["xn"], ["ids"], domain="ai.onnx.ml", keys_strings=["a", "b", "c"],
                         values_int64s=[1, 2, 3], default_int64=0),
        helper.make_node("Mul", ["ids", "w"], ["p"]),
        helper.make_node("Add", ["p", "ids"], ["y"]),
        helper.make_node("LabelEncoder", ["y"], ["z"], domain="ai.onnx.ml", keys_int64s=[2, 4],
                         values_strings=["two", "four"], default_string="?"),
    ]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TP.STRING, [5]),
                                               helper.make_tensor_value_info("w", TP.INT64, [])],
                              [helper.make_tensor_value_info("y", TP.INT64, None),
                               helper.make_tensor_value_info("z", TP.STRING, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 4)])
    m.ir_version = 10
    return m


FEEDS = [{"x": S("A", "the", "b", "zz", "C"), "w": np.array(1, np.int64)},
         {"x": S("The", "the", "THE", "the", "the"), "w": np.array(3, np.int64)}]


def check(module, m) -> None:
    ref = ReferenceEvaluator(m)
    for feeds in FEEDS:
        want = ref.run(None, feeds)
        got = list(module.run(feeds).values())
        assert got[0].dtype == np.int64 and np.array_equal(got[0], want[0])
        assert got[1].dtype == object and list(got[1]) == list(want[1])


def test_mixed_model_runs_host_steps_around_a_compiled_segment():
    m = mixed_model()
    module = ember.compile(m, cflags=("-O1",))
    assert isinstance(module, ProgramModule) and isinstance(module, LoadedModel)
    assert [s["kind"] for s in module.metadata["steps"]] == ["host", "host", "segment", "host"]
    assert module.host_steps[0] == ("StringNormalizer_0", "string_normalize")
    assert len(module.segments) == 1 and module.segments[0].is_dynamic    # the length the data decides
    check(module, m)
    out = module(S("a", "b", "c", "x", "the"), np.array(2, np.int64))
    assert list(out[0]) == [3, 6, 9, 0] and list(out[1]) == ["?", "?", "?", "?"]


def test_save_and_load(tmp_path):
    m = mixed_model()
    module = ember.compile(m, cflags=("-O1",))
    path = module.save(tmp_path / "mixed.ember")
    assert is_program(path) and not list(tmp_path.glob(".*.tmp"))
    again = ember.load(path)
    assert isinstance(again, ProgramModule) and again.input_names == ["x", "w"]
    check(again, m)
    # a damaged program is refused before anything is loaded
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    bad = tmp_path / "bad.ember"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt"):
        load(bad)


def test_inputs_are_checked():
    module = ember.compile(mixed_model(), cflags=("-O1",))
    with pytest.raises(InputError, match="expects string\\[5\\]"):
        module.run({"x": np.arange(5), "w": np.array(1, np.int64)})
    with pytest.raises(InputError, match="dimension 0"):
        module.run({"x": S("a", "b"), "w": np.array(1, np.int64)})
    with pytest.raises(InputError, match="missing input"):
        module.run({"x": FEEDS[0]["x"]})
    # numpy str_ arrays are taken as strings
    out = module.run({"x": np.array(["a", "b", "c", "d", "e"]), "w": np.array(1, np.int64)})
    assert list(out["y"]) == [2, 4, 6, 0, 0]


def test_models_without_strings_stay_one_library():
    g = parse_graph("graph g(%x: float32[4]) {\n  %y = relu(%x)\n  return %y\n}")
    assert not needs_program(g)
    module = ember.compile(g)
    assert type(module) is Module and not is_program(module.path)


def test_partition_keeps_compiled_nodes_together():
    g = parse_graph("""graph g(%s: string[3], %v: float32[3]) {
      %a = relu(%v)
      %e = string_equal(%s, %s)
      %b = neg(%a)
      %f = cast(%e) {to="float32"}
      %c = add(%f, %b)
      %t = string_concat(%s, %s)
      %u = label_encode(%t) {keys=["aa"], values=[1.0], default=0.0, dtype="float32"}
      %d = mul(%u, %c)
      return %d, %t
    }""")
    steps = partition(g)
    shape = [("host" if st.host else "segment", [n.name for n in st.nodes]) for st in steps]
    assert shape == [("segment", ["a", "b"]), ("host", ["e"]), ("host", ["t"]), ("host", ["u"]),
                     ("segment", ["f", "c", "d"])]
    assert [v.name for v in steps[0].outputs] == ["b"]
    assert [v.name for v in steps[-1].inputs] == ["e", "b", "u"]
    module = ember.compile(g)
    s = S("a", "b", "a")
    out = module.run({"s": s, "v": np.array([1, -2, 3], np.float32)})
    assert list(out["t"]) == ["aa", "bb", "aa"]
    # u = [1, 0, 1], c = 1 - relu(v) = [0, 1, -2]
    assert np.array_equal(out["d"], np.array([0, 0, -2], np.float32))
    assert np.array_equal(out["d"], run_graph(g, {"s": s, "v": np.array([1, -2, 3], np.float32)})[0])


def test_random_and_pattern_inputs():
    from ember.benchmark import random_inputs

    module = ember.compile(mixed_model(), cflags=("-O1",))
    feeds = random_inputs(module, int_high=3)
    assert feeds["x"].dtype == object and set(feeds["x"]) <= {"0", "1", "2"}
    assert list(module.run(feeds)["y"]) == [0] * 5          # no key matches a digit
    with pytest.raises(InputError, match="no test pattern for strings"):
        module.pattern_inputs()


# ---- loading: by content, and malformed headers -------------------------------------------------

def weighted_model(k: int):
    """mixed_model with the compiled step multiplying by k too (distinct segment artifacts)."""
    m = mixed_model()
    m.graph.node.insert(3, helper.make_node("Mul", ["p", "k"], ["pk"]))
    m.graph.node[4].input[0] = "pk"
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(k, np.int64), "k"))
    return m


def test_stale_program_saved_over_the_same_path(tmp_path):
    path = tmp_path / "m.ember"
    x, w = S("a", "b", "c", "x", "the"), np.array(2, np.int64)
    ember.compile(weighted_model(1), cflags=("-O1",)).save(path)
    first = load(path)
    ember.compile(weighted_model(5), cflags=("-O1",)).save(path)
    second = load(path)
    assert list(second(x, w)[0]) == [11, 22, 33, 0]
    assert list(first(x, w)[0]) == [3, 6, 9, 0]
    with pytest.raises(ArtifactError, match="changed since"):
        first.save(tmp_path / "again.ember")       # the file is another program now
    assert list(load(second.save(tmp_path / "again.ember"))(x, w)[0]) == [11, 22, 33, 0]


def reseal(path, head: bytes, rest: bytes) -> None:
    import hashlib
    import struct

    from ember.runtime.artifact import TRAILER_MAGIC
    from ember.runtime.program import PROGRAM_MAGIC

    payload = PROGRAM_MAGIC + struct.pack("<Q", len(head)) + head + rest
    path.write_bytes(payload + TRAILER_MAGIC + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest())


def test_malformed_program_headers_raise_artifact_error(tmp_path):
    """Every header that is not a program this runtime can run raises ArtifactError (sealed
    with a good trailer, so only the header is wrong), and never another exception."""
    import json
    import struct

    from ember.runtime.artifact import TRAILER_SIZE
    from ember.runtime.program import PROGRAM_MAGIC

    good = tmp_path / "good.ember"
    ember.compile(mixed_model(), cflags=("-O1",)).save(good)
    data = good.read_bytes()[:-TRAILER_SIZE]
    start = len(PROGRAM_MAGIC) + 8
    (n,) = struct.unpack("<Q", data[len(PROGRAM_MAGIC):start])
    header, rest = json.loads(data[start:start + n]), data[start + n:]

    def edit(fn):
        h = json.loads(json.dumps(header))
        fn(h)
        return json.dumps(h).encode()

    def step(i, **kw):
        return lambda h: h["steps"][i].update(kw)

    cases = {
        "not json": b"{nope", "not an object": b"[1, 2]", "deep": b"[" * 100000 + b"]" * 100000,
        "not utf-8": b'{"a": "\xff"}',
        "no inputs": edit(lambda h: h.pop("inputs")), "inputs not a list": edit(lambda h: h.update(inputs=5)),
        "bad dtype": edit(lambda h: h["inputs"][0].update(dtype="float99")),
        "bad shape": edit(lambda h: h["inputs"][0].update(shape="x")),
        "no steps": edit(lambda h: h.pop("steps")), "steps of ints": edit(lambda h: h.update(steps=[1, 2])),
        "unknown kind": edit(step(0, kind="gpu")), "unknown kernel": edit(step(0, kernel="no_such_kernel")),
        "unwritten slot": edit(step(1, inputs=[999])), "slot not int": edit(step(1, inputs=["x"])),
        "segment out of range": edit(step(2, segment=7)), "segment not int": edit(step(2, segment="0")),
        "segment arity": edit(step(2, inputs=[])),
        "output never written": edit(lambda h: h.update(output_slots=[12345, 1])),
        "outputs arity": edit(lambda h: h.update(output_slots=[])),
        "bad constant": edit(lambda h: h["constants"].append({"slot": 50, "dtype": "int64", "shape": [3], "data": [1]})),
        "segment outside": edit(lambda h: h["segments"][0].update(size=10 ** 9)),
        "segment negative": edit(lambda h: h["segments"][0].update(offset=-5)),
        "no segments": edit(lambda h: h.pop("segments")),
        "bad symbols": edit(lambda h: h.update(symbols=[{"name": "n"}])),
        "wrong format": edit(lambda h: h.update(format=99)),
    }
    for name, head in cases.items():
        bad = tmp_path / "bad.ember"
        reseal(bad, head, rest)
        with pytest.raises(ArtifactError, match="bad.ember"):
            load(bad)
            pytest.fail(f"{name}: loaded")
    # a header length beyond the file, and random flips of header bytes
    bad = tmp_path / "long.ember"
    reseal(bad, json.dumps(header).encode(), rest)
    raw = bytearray(bad.read_bytes()[:-TRAILER_SIZE])
    raw[len(PROGRAM_MAGIC):start] = struct.pack("<Q", 10 ** 12)
    reseal(bad, bytes(raw[start:]), b"")
    with pytest.raises(ArtifactError):
        load(bad)
    rng = np.random.default_rng(0)
    text = bytearray(json.dumps(header).encode())
    for _ in range(200):
        mutated = bytearray(text)
        for i in rng.integers(0, len(mutated), size=int(rng.integers(1, 4))):
            mutated[i] = int(rng.integers(32, 127))
        bad = tmp_path / "fuzz.ember"
        reseal(bad, bytes(mutated), rest)
        try:
            module = load(bad)
        except ArtifactError:
            continue
        for feeds in FEEDS:      # a change the header's checks let through (an attribute, a
            try:                 # constant, a name) fails, if at all, as an Ember error
                module.run(feeds)
            except EmberError:
                pass
