// model.mjs — load and run an Ember wasm32 model in a web page or in Node.js (20 or later), with
// no dependencies.
//
//   import { load } from "./model.mjs";
//   const model = await load();                 // ./model.wasm next to this file (or a URL, bytes)
//   model.inputs;                               // [{name, dtype, shape}, ...]
//   const out = model.run({ x: new Float32Array(64) });
//   out.y.data, out.y.shape                     // a typed array copied out of the module, its shape
//
// The artifact is a WebAssembly module (a WASI reactor exporting the C API of ember_runtime.h
// and malloc/free) followed by Ember's 48-byte trailer: "EMBERART", the module's length (u64,
// little-endian), its sha256.  Loading checks, before anything runs, that the file is whole (the
// trailer's length and digest), that this engine has the SIMD128 the module needs, and that the
// module is what it says: its runtime ABI, the metadata format, the wasm32 target, the signature.
// Every failure is an EmberArtifactError with the reason.  The module runs on one thread.

const TRAILER = 48;
/** EMBER_ABI_VERSION of ember_runtime.h and the metadata format this file reads. */
export const ABI_VERSION = 5;
export const METADATA_FORMAT = 1;
/** A module with one i8x16.splat: an engine without SIMD128 refuses it. */
const SIMD_PROBE = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7b, 3, 2, 1, 0,
  0x0a, 8, 1, 6, 0, 0x41, 0, 0xfd, 0x0f, 0x0b]);
const ARRAYS = { float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array,
  int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array,
  uint64: BigUint64Array, bool: Uint8Array, float16: Uint16Array, bfloat16: Uint16Array };

/** What loading a damaged, foreign or unsupported artifact throws (Ember's E303). */
export class EmberArtifactError extends Error {
  constructor(message) { super(message); this.name = "EmberArtifactError"; this.code = "E303"; }
}

const fail = (message) => { throw new EmberArtifactError(message); };
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The module bytes of a sealed artifact; throws unless the file is whole. */
export async function unseal(data, where = "the artifact") {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < TRAILER) fail(`${where} is not an Ember artifact or is truncated (${bytes.length} bytes, no trailer)`);
  const tail = bytes.subarray(bytes.length - TRAILER);
  if (String.fromCharCode(...tail.subarray(0, 8)) !== "EMBERART")
    fail(`${where} is not an Ember artifact or is truncated (its trailer is missing)`);
  const length = Number(new DataView(tail.buffer, tail.byteOffset + 8, 8).getBigUint64(0, true));
  if (length !== bytes.length - TRAILER)
    fail(`${where} is truncated or damaged: the trailer records ${length} bytes but the file holds ${bytes.length - TRAILER}`);
  const payload = bytes.subarray(0, length);
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", payload));
  if (hex(digest) !== hex(tail.subarray(16))) fail(`${where} is corrupt: its contents do not match its checksum`);
  if (length < 8 || hex(payload.subarray(0, 4)) !== "0061736d")
    fail(`${where} is an Ember artifact for another target, not a WebAssembly module (wasm32)`);
  return payload;
}

/** The few WASI preview1 calls the module imports: no environment, no files; others answer ENOSYS. */
function wasiImports(module, memory) {
  const known = {
    environ_sizes_get: (count, size) => { const v = new DataView(memory().buffer); v.setUint32(count, 0, true); v.setUint32(size, 0, true); return 0; },
    environ_get: () => 0,
    proc_exit: (code) => fail(`the model exited with status ${code}`),
  };
  const wasi = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== "wasi_snapshot_preview1" || imp.kind !== "function")
      fail(`the module imports ${imp.module}.${imp.name}: not an Ember wasm32 artifact`);
    wasi[imp.name] = known[imp.name] || (() => 52);     // ENOSYS (a missing fd is EBADF to it too)
  }
  return { wasi_snapshot_preview1: wasi };
}

/** Compiles and instantiates the artifact ``data`` and checks what it says it is. */
export async function instantiate(data, where = "the artifact") {
  const payload = await unseal(data, where);
  if (!WebAssembly.validate(SIMD_PROBE))
    fail(`${where} needs WebAssembly SIMD (simd128), which this engine lacks`);
  let module;
  try {
    module = await WebAssembly.compile(payload);
  } catch (e) {
    fail(`${where} does not compile on this engine: ${e.message}`);
  }
  let memory = null;
  const instance = await WebAssembly.instantiate(module, wasiImports(module, () => memory));
  const x = instance.exports;
  memory = x.memory;
  for (const name of ["ember_abi_version", "ember_metadata", "ember_cpu_check", "ember_model_run", "malloc"])
    if (typeof x[name] !== "function") fail(`${where} lacks ${name}: not an Ember artifact`);
  if (x._initialize) x._initialize();
  const cstring = (p) => {
    const bytes = new Uint8Array(memory.buffer, p);
    return new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
  };
  const lastError = () => cstring(x.ember_last_error());
  if (x.ember_abi_version() !== ABI_VERSION)
    fail(`${where} was built for runtime ABI ${x.ember_abi_version()}; this model.mjs reads ${ABI_VERSION}`);
  if (x.ember_cpu_check() !== 0) fail(`${where}: ${lastError()}`);
  let meta;
  try { meta = JSON.parse(cstring(x.ember_metadata())); } catch (e) { fail(`${where} has malformed metadata: ${e.message}`); }
  if (meta.format !== METADATA_FORMAT) fail(`${where} has metadata format ${meta.format}; this model.mjs reads ${METADATA_FORMAT}`);
  if (meta.triple !== "wasm32-wasi") fail(`${where} says it is for ${meta.target} (${meta.triple}), not wasm32`);
  // struct ember_tensor_info on wasm32: name, dtype, ndim, shape (4 bytes each), then
  // num_elements and nbytes (int64 at 16 and 24)
  const info = (p) => {
    const v = new DataView(memory.buffer);
    const ndim = v.getInt32(p + 8, true), shape = v.getUint32(p + 12, true);
    return {
      name: cstring(v.getUint32(p, true)), dtype: cstring(v.getUint32(p + 4, true)),
      shape: Array.from({ length: ndim }, (_, d) => Number(v.getBigInt64(shape + 8 * d, true))),
      numElements: Number(v.getBigInt64(p + 16, true)), nbytes: Number(v.getBigInt64(p + 24, true)),
    };
  };
  const tensors = (count, get, kind) => {
    const list = Array.from({ length: x[count]() }, (_, i) => info(x[get](i)));
    const said = meta[kind] || [];
    if (said.length !== list.length || list.some((t, i) => t.name !== said[i].name || t.dtype !== said[i].dtype))
      fail(`${where} has malformed metadata: its ${kind} are not the module's`);
    return list;
  };
  return {
    exports: x, metadata: meta, lastError, memory: () => memory.buffer,
    inputs: tensors("ember_num_inputs", "ember_input_info", "inputs"),
    outputs: tensors("ember_num_outputs", "ember_output_info", "outputs"),
  };
}

/** A deterministic input for tensor ``t`` (run_model.c's pattern): with v = (i * 7919) % 1000,
 *  floats v / 1000 - 0.5, signed integers v % 200 - 100, unsigned v % 200, bool v % 2. */
export function pattern(t) {
  const A = ARRAYS[t.dtype];
  if (!A || t.dtype === "float16" || t.dtype === "bfloat16") throw new RangeError(`input '${t.name}': no pattern for ${t.dtype}`);
  const n = t.shape.reduce((a, b) => a * b, 1), a = new A(n);
  for (let i = 0; i < n; i++) {
    const v = (i * 7919) % 1000;
    const value = t.dtype.startsWith("float") ? v / 1000 - 0.5 : t.dtype === "bool" ? v % 2
      : t.dtype.startsWith("int") ? (v % 200) - 100 : v % 200;
    a[i] = A === BigInt64Array || A === BigUint64Array ? BigInt(value) : value;
  }
  return a;
}

/** The bytes at ``source``: a URL (fetched; a file: URL read from disk in Node.js), bytes, or a Response. */
async function fetchBytes(source) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return new Uint8Array(source);
  if (typeof Response !== "undefined" && source instanceof Response) return new Uint8Array(await source.arrayBuffer());
  const url = new URL(source, import.meta.url);
  if (url.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    return new Uint8Array(await readFile(url));
  }
  const response = await fetch(url);
  if (!response.ok) fail(`cannot fetch ${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** A loaded model: ``inputs``, ``outputs`` ({name, dtype, shape}), ``metadata``, ``run``, ``dispose``. */
export class Model {
  constructor(m) {
    this.m = m;
    this.metadata = m.metadata;
    const sig = (t) => ({ name: t.name, dtype: t.dtype, shape: t.shape });
    this.inputs = m.inputs.map(sig);
    this.outputs = m.outputs.map(sig);
    for (const t of [...m.inputs, ...m.outputs])
      if (t.numElements < 0) fail(`'${t.name}' has symbolic dimensions: model.mjs runs models of static shapes`);
    const x = m.exports;
    const alloc = (n) => { const p = x.malloc(Math.max(n, 1)); if (!p) throw new Error("out of memory"); return p; };
    this.inPtrs = m.inputs.map((t) => alloc(t.nbytes));
    this.outPtrs = m.outputs.map((t) => alloc(t.nbytes));
    const table = (ptrs) => {
      const p = alloc(4 * ptrs.length), v = new DataView(m.memory());
      ptrs.forEach((q, k) => v.setUint32(p + 4 * k, q, true));
      return p;
    };
    this.ins = table(this.inPtrs);
    this.outs = table(this.outPtrs);
    this.handle = x.ember_model_create();
    if (!this.handle) throw new Error(m.lastError());
  }

  /** Writes input ``i``'s bytes (a typed array or ArrayBuffer of exactly its size). */
  setInput(i, value) {
    const t = this.m.inputs[i];
    const bytes = ArrayBuffer.isView(value) ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(value);
    if (bytes.length !== t.nbytes)
      throw new RangeError(`input '${t.name}' takes ${t.nbytes} bytes (${t.dtype}[${t.shape}]), got ${bytes.length}`);
    new Uint8Array(this.m.memory(), this.inPtrs[i], t.nbytes).set(bytes);
  }

  /** Runs on the inputs already written (``setInput``); throws with the runtime's message. */
  runInPlace() {
    if (this.m.exports.ember_model_run(this.handle, this.ins, this.outs) !== 0) throw new Error(this.m.lastError());
  }

  /** Output ``i``'s bytes in the module's memory (valid until the next run). */
  outputBytes(i) {
    return new Uint8Array(this.m.memory(), this.outPtrs[i], this.m.outputs[i].nbytes);
  }

  /** Runs on ``feeds`` ({input name: typed array}); returns {output name: {data, dtype, shape}}. */
  run(feeds) {
    const names = this.inputs.map((t) => t.name);
    for (const name of Object.keys(feeds))
      if (!names.includes(name)) throw new RangeError(`the model has no input '${name}'; its inputs are ${names.join(", ")}`);
    names.forEach((name, i) => {
      if (!(name in feeds)) throw new RangeError(`input '${name}' is missing`);
      this.setInput(i, feeds[name]);
    });
    this.runInPlace();
    const out = {};
    this.m.outputs.forEach((t, i) => {
      const A = ARRAYS[t.dtype] || Uint8Array;
      const copy = this.outputBytes(i).slice();
      out[t.name] = { data: new A(copy.buffer), dtype: t.dtype, shape: t.shape };
    });
    return out;
  }

  dispose() {
    if (this.handle) this.m.exports.ember_model_destroy(this.handle);
    this.handle = 0;
  }
}

/** Loads the model: ``source`` is a URL or path (default: model.wasm next to this file), bytes or a Response. */
export async function load(source = new URL("./model.wasm", import.meta.url)) {
  const where = source instanceof Uint8Array || source instanceof ArrayBuffer ? "the artifact" : `'${source}'`;
  return new Model(await instantiate(await fetchBytes(source), where));
}
