// wasm.mjs — Ember's wasm32 artifact next to onnxruntime-web in one Node.js process (benchmarks/wasm.py runs it).
//
//   node benchmarks/wasm.mjs SPEC.json
//
// SPEC.json: {"artifact": "model.wasm", "onnx": "model.onnx", "ort": "<folder with node_modules/onnxruntime-web>",
//             "inputs": [{"name", "dtype", "shape", "file"}], "outputs": [names], "warmup": N, "runs": N,
//             "block": N, "out": "PREFIX"}
// Both engines run the same inputs on one thread (onnxruntime-web: the wasm execution provider, SIMD,
// numThreads 1), in alternating blocks of `block` runs after `warmup` runs each, so that a busy stretch
// of the machine slows both alike.  Prints one JSON line: the median and p10/p90 latencies of each (ms)
// and the load times; writes each engine's outputs to PREFIX<engine>-<i>.bin.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { Model, instantiate } from "../src/ember/runtime/runners/model.mjs";

const ARRAYS = { float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array, int32: Int32Array,
                 int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array,
                 uint64: BigUint64Array, bool: Uint8Array };

const now = () => Number(process.hrtime.bigint()) / 1e6;
const stats = (t) => {
  const s = [...t].sort((a, b) => a - b), q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p10: q(0.1), p90: q(0.9), runs: s.length };
};

async function ember(spec, data) {
  const t0 = now();
  const model = new Model(await instantiate(readFileSync(spec.artifact), spec.artifact));
  data.forEach((bytes, i) => model.setInput(i, bytes));
  const run = () => model.runInPlace();
  const results = () => model.outputs.map((t, i) => model.outputBytes(i).slice());
  return { run, results, loadMs: now() - t0 };
}

async function onnxruntime(spec, data) {
  const require = createRequire(join(spec.ort, "package.json"));
  const ort = require("onnxruntime-web");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.simd = true;
  const t0 = now();
  const session = await ort.InferenceSession.create(spec.onnx, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const feeds = {};
  spec.inputs.forEach((t, i) => {
    const A = ARRAYS[t.dtype];
    const bytes = data[i];
    const arr = new A(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    feeds[t.name] = new ort.Tensor(t.dtype === "bool" ? "bool" : t.dtype, arr, t.shape);
  });
  let last = null;
  const run = async () => { last = await session.run(feeds); };
  const results = () => spec.outputs.map((n) => {
    const d = last[n].data;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
  });
  return { run, results, loadMs: now() - t0, version: ort.env.versions?.web ?? "" };
}

async function main() {
  const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const data = spec.inputs.map((t) => new Uint8Array(readFileSync(t.file)));
  const engines = { ember: await ember(spec, data), "onnxruntime-web": await onnxruntime(spec, data) };
  const times = Object.fromEntries(Object.keys(engines).map((k) => [k, []]));
  for (const e of Object.values(engines)) for (let k = 0; k < spec.warmup; k++) await e.run();
  for (let done = 0; done < spec.runs; done += spec.block) {
    for (const [name, e] of Object.entries(engines)) {
      for (let k = 0; k < Math.min(spec.block, spec.runs - done); k++) {
        const t0 = now();
        await e.run();
        times[name].push(now() - t0);
      }
    }
  }
  const report = {};
  for (const [name, e] of Object.entries(engines)) {
    report[name] = { ...stats(times[name]), load_ms: e.loadMs };
    e.results().forEach((bytes, i) => writeFileSync(`${spec.out}${name}-${i}.bin`, bytes));
  }
  report.ort_version = engines["onnxruntime-web"].version;
  report.node = process.version;
  console.log(JSON.stringify(report));
}

main().then(() => process.exit(0), (e) => { console.error(`wasm.mjs: ${e.stack || e}`); process.exit(1); });
