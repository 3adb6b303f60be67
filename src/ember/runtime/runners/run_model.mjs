// run_model.mjs — run an Ember wasm32 artifact under Node.js (20 or later), with no Python.
//
//   node src/ember/runtime/runners/run_model.mjs model.wasm [--iters N] [--out PREFIX] [INPUT.bin ...]
//
// The artifact is a WebAssembly module (a WASI reactor) followed by Ember's 48-byte trailer:
// "EMBERART", the module's length (u64, little-endian), its sha256.  The trailer is checked and
// taken off before the module is compiled.  The module exports the C API of ember_runtime.h
// (ember_model_create, ember_model_run, ember_input_info, ...) and malloc/free; it runs on one
// thread.  Inputs and printed output are those of src/ember/runtime/runners/run_model.c: raw input files, or
// the same deterministic pattern; the first values of each output, the FNV-1a checksum of all
// output bytes, the latency; with --out, output i's bytes go to PREFIX<i>.bin.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { WASI } from "node:wasi";

const TRAILER = 48;

/** The module bytes of a sealed artifact (throws if it is truncated or damaged). */
export function unseal(data, where = "the artifact") {
  if (data.length < TRAILER) throw new Error(`${where} is not an Ember artifact or is truncated`);
  const tail = data.subarray(data.length - TRAILER);
  if (Buffer.from(tail.subarray(0, 8)).toString("latin1") !== "EMBERART")
    throw new Error(`${where} is not an Ember artifact or is truncated (its trailer is missing)`);
  const length = Number(Buffer.from(tail).readBigUInt64LE(8));
  if (length !== data.length - TRAILER) throw new Error(`${where} is truncated or damaged`);
  const payload = data.subarray(0, length);
  const digest = createHash("sha256").update(payload).digest();
  if (!digest.equals(Buffer.from(tail.subarray(16)))) throw new Error(`${where} is corrupt: its checksum does not match`);
  return payload;
}

/** Instantiates an artifact's module: {exports, memory, tensors(inputs|outputs)}. */
export async function loadModel(bytes, where) {
  const module = await WebAssembly.compile(unseal(bytes, where));
  const wasi = new WASI({ version: "preview1", args: [], env: {} });
  const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport });
  wasi.initialize(instance);
  const x = instance.exports;
  const view = () => new DataView(x.memory.buffer);
  const cstring = (p) => {
    const bytes = new Uint8Array(x.memory.buffer, p);
    return Buffer.from(bytes.subarray(0, bytes.indexOf(0))).toString("utf8");
  };
  const lastError = () => cstring(x.ember_last_error());
  if (x.ember_cpu_check() !== 0) throw new Error(lastError());
  // struct ember_tensor_info on wasm32: name, dtype, ndim, shape (4 bytes each), then
  // num_elements and nbytes (int64 at 16 and 24), elem_bytes (int32 at 32)
  const info = (p) => {
    const v = view();
    const ndim = v.getInt32(p + 8, true), shape = v.getUint32(p + 12, true);
    return {
      name: cstring(v.getUint32(p, true)), dtype: cstring(v.getUint32(p + 4, true)),
      shape: Array.from({ length: ndim }, (_, d) => Number(v.getBigInt64(shape + 8 * d, true))),
      numElements: Number(v.getBigInt64(p + 16, true)), nbytes: Number(v.getBigInt64(p + 24, true)),
    };
  };
  const tensors = (count, get) => Array.from({ length: x[count]() }, (_, i) => info(x[get](i)));
  return {
    exports: x, lastError, memory: () => x.memory.buffer,
    inputs: tensors("ember_num_inputs", "ember_input_info"),
    outputs: tensors("ember_num_outputs", "ember_output_info"),
  };
}

/** src/ember/runtime/runners/run_model.c's pattern: v = (i * 7919) % 1000, by dtype. */
function fillPattern(t, buffer, ptr) {
  const arrays = { float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array,
                   int32: Int32Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, bool: Uint8Array };
  const n = t.numElements;
  if (t.dtype === "int64" || t.dtype === "uint64") {
    const a = t.dtype === "int64" ? new BigInt64Array(buffer, ptr, n) : new BigUint64Array(buffer, ptr, n);
    for (let i = 0; i < n; i++) { const v = (i * 7919) % 1000; a[i] = BigInt(t.dtype === "int64" ? (v % 200) - 100 : v % 200); }
    return;
  }
  const A = arrays[t.dtype];
  if (!A) throw new Error(`input '${t.name}': no pattern for ${t.dtype}; give an input file`);
  const a = new A(buffer, ptr, n);
  for (let i = 0; i < n; i++) {
    const v = (i * 7919) % 1000;
    if (t.dtype.startsWith("float")) a[i] = Math.fround(v / 1000 - 0.5);
    else if (t.dtype === "bool") a[i] = v % 2;
    else a[i] = t.dtype.startsWith("int") ? (v % 200) - 100 : v % 200;
  }
}

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
  const m = await loadModel(readFileSync(artifact), artifact);
  const x = m.exports;
  if (files.length && files.length !== m.inputs.length)
    throw new Error(`the model takes ${m.inputs.length} inputs, ${files.length} files given`);
  const alloc = (n) => { const p = x.malloc(Math.max(n, 1)); if (!p) throw new Error("out of memory"); return p; };
  const inPtrs = m.inputs.map((t, i) => {
    if (t.numElements < 0) throw new Error(`input '${t.name}' has symbolic dimensions: this example runs static shapes`);
    const p = alloc(t.nbytes);
    if (files.length) {
      const data = readFileSync(files[i]);
      if (data.length !== t.nbytes) throw new Error(`${files[i]} holds ${data.length} bytes, input '${t.name}' takes ${t.nbytes}`);
      new Uint8Array(m.memory(), p, t.nbytes).set(data);
    } else fillPattern(t, m.memory(), p);
    return p;
  });
  const outPtrs = m.outputs.map((t) => alloc(t.nbytes));
  const table = (ptrs) => { const p = alloc(4 * ptrs.length); const v = new DataView(m.memory()); ptrs.forEach((q, k) => v.setUint32(p + 4 * k, q, true)); return p; };
  const ins = table(inPtrs), outs = table(outPtrs);
  const model = x.ember_model_create();
  if (!model) throw new Error(m.lastError());
  if (x.ember_model_run(model, ins, outs) !== 0) throw new Error(m.lastError());
  const times = [];
  for (let k = 0; k < iters; k++) {
    const t0 = process.hrtime.bigint();
    if (x.ember_model_run(model, ins, outs) !== 0) throw new Error(m.lastError());
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  let hash = 1469598103934665603n;
  m.outputs.forEach((t, i) => {
    const bytes = new Uint8Array(m.memory(), outPtrs[i], t.nbytes);
    const first = t.dtype === "float32" ? Array.from(new Float32Array(m.memory(), outPtrs[i], Math.min(8, t.numElements)), (v) => +v.toPrecision(6)) : [];
    console.log(`output ${i} '${t.name}' ${t.dtype}[${t.shape.join(", ")}]: ${first.join(" ")}${t.numElements > 8 ? " ..." : ""}`);
    for (const b of bytes) hash = ((hash ^ BigInt(b)) * 1099511628211n) & 0xffffffffffffffffn;
    if (outPrefix) writeFileSync(`${outPrefix}${i}.bin`, bytes);
  });
  console.log(`checksum fnv1a64 ${hash.toString(16).padStart(16, "0")}`);
  console.log(`threads 1, latency median ${times[iters >> 1].toFixed(4)} ms, min ${times[0].toFixed(4)} ms over ${iters} runs`);
  x.ember_model_destroy(model);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => { console.error(`run_model: ${e.message}`); process.exit(1); });
}
