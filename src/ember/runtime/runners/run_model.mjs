// run_model.mjs — run an Ember wasm32 artifact under Node.js (20 or later), with no Python.
//
//   node src/ember/runtime/runners/run_model.mjs model.wasm [--iters N] [--out PREFIX] [INPUT.bin ...]
//
// The artifact is checked and loaded by model.mjs (next to this file: the trailer, its sha256,
// SIMD128, the runtime ABI, the metadata), which runs it on one thread.  Inputs and printed output
// are those of src/ember/runtime/runners/run_model.c: raw input files, or the same deterministic
// pattern; the first values of each output, the FNV-1a checksum of all output bytes, the latency;
// with --out, output i's bytes go to PREFIX<i>.bin.
import { readFileSync, writeFileSync } from "node:fs";
import { Model, instantiate, pattern } from "./model.mjs";

async function main(argv) {
  let artifact = null, iters = 10, outPrefix = null;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--iters") iters = Math.max(1, parseInt(argv[++i], 10));
    else if (argv[i] === "--out") outPrefix = argv[++i];
    else if (argv[i].startsWith("-")) { artifact = null; break; }
    else if (!artifact) artifact = argv[i];
    else files.push(argv[i]);
  }
  if (!artifact) {
    console.error("usage: run_model.mjs ARTIFACT.wasm [--iters N] [--out PREFIX] [INPUT.bin ...]");
    return 2;
  }
  const model = new Model(await instantiate(readFileSync(artifact), artifact));
  const m = model.m;
  if (files.length && files.length !== m.inputs.length)
    throw new Error(`the model takes ${m.inputs.length} inputs, ${files.length} files given`);
  m.inputs.forEach((t, i) => {
    if (files.length) model.setInput(i, readFileSync(files[i]));
    else model.setInput(i, pattern(t));
  });
  model.runInPlace();
  const times = [];
  for (let k = 0; k < iters; k++) {
    const t0 = process.hrtime.bigint();
    model.runInPlace();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  let hash = 1469598103934665603n;
  m.outputs.forEach((t, i) => {
    const bytes = model.outputBytes(i);
    const first = t.dtype === "float32" ? Array.from(new Float32Array(m.memory(), model.outPtrs[i], Math.min(8, t.numElements)), (v) => +v.toPrecision(6)) : [];
    console.log(`output ${i} '${t.name}' ${t.dtype}[${t.shape.join(", ")}]: ${first.join(" ")}${t.numElements > 8 ? " ..." : ""}`);
    for (const b of bytes) hash = ((hash ^ BigInt(b)) * 1099511628211n) & 0xffffffffffffffffn;
    if (outPrefix) writeFileSync(`${outPrefix}${i}.bin`, bytes);
  });
  console.log(`checksum fnv1a64 ${hash.toString(16).padStart(16, "0")}`);
  console.log(`threads 1, latency median ${times[iters >> 1].toFixed(4)} ms, min ${times[0].toFixed(4)} ms over ${iters} runs`);
  model.dispose();
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => { console.error(`run_model: ${e.message}`); process.exit(1); });
}
