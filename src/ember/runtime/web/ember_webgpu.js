// Runs a model that Ember compiled for target "webgpu" in a browser with WebGPU.
//
// The package (GPUModule.export_web) holds model.json (the signature, the launches in graph order
// with each binding's place, the output copies), model.wgsl (one shader module per kernel, each
// after a "// ember kernel NAME" line), constants.bin and this file.  Usage:
//
//   import { loadModel } from "./ember_webgpu.js";
//   const model = await loadModel(new URL("./", import.meta.url));
//   const outputs = await model.run({ input: new Float32Array(...) });   // name -> typed array
//
// Buffers as in Ember's Python runner: the arena, the constants, one per input and output, the
// flag; a run writes each input once, dispatches every kernel in one compute pass and reads each
// output back once.  int64 inputs and outputs are BigInt64Array.

const MARKER = "// ember kernel ";
const LIMITS = ["maxStorageBuffersPerShaderStage", "maxStorageBufferBindingSize", "maxBufferSize",
  "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup"];
const ARRAYS = {
  float32: Float32Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  int16: Int16Array, uint16: Uint16Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};
const FLAG_INDEX = 1, FLAG_INT64 = 2;

const pad4 = (n) => Math.max(4, Math.ceil(n / 4) * 4);
const count = (entry) => entry.shape.reduce((a, d) => a * d, 1);
const byteSize = (entry) => count(entry) * ARRAYS[entry.dtype].BYTES_PER_ELEMENT;

export async function loadModel(base) {
  const get = async (name) => {
    const r = await fetch(new URL(name, base));
    if (!r.ok) throw new Error(`cannot fetch ${name}: ${r.status}`);
    return r;
  };
  const meta = await (await get("model.json")).json();
  const source = await (await get("model.wgsl")).text();
  const constants = new Uint8Array(await (await get("constants.bin")).arrayBuffer());
  if (!navigator.gpu) throw new Error("this browser has no WebGPU");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  const requiredLimits = {};
  for (const k of LIMITS) requiredLimits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({ requiredLimits });
  return new EmberModel(device, meta, source, constants);
}

export class EmberModel {
  constructor(device, meta, source, constants) {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const buffer = (n) => device.createBuffer({ size: pad4(n), usage });
    this.device = device;
    this.meta = meta;
    this.arena = buffer(Math.max(meta.arena_bytes, 256));
    this.consts = buffer(constants.length);
    device.queue.writeBuffer(this.consts, 0, constants);
    this.flag = buffer(4);
    this.inputs = meta.inputs.map((e) => buffer(byteSize(e)));
    this.outputs = meta.outputs.map((e) => buffer(byteSize(e)));
    const modules = {};
    for (const part of source.split("\n" + MARKER).slice(1)) {
      modules[part.slice(0, part.indexOf("\n")).trim()] = MARKER + part;
    }
    const resource = (a) => {
      switch (a[0]) {
        case "input": return { buffer: this.inputs[a[1]] };
        case "output": return { buffer: this.outputs[a[1]] };
        case "arena": return { buffer: this.arena, offset: a[1], size: pad4(a[2]) };
        case "const": return { buffer: this.consts, offset: a[1], size: pad4(a[2]) };
        case "flag": return { buffer: this.flag };
        default: throw new Error(`unknown kernel argument ${JSON.stringify(a)}`);
      }
    };
    this.launches = meta.gpu.launches.map((l) => {
      const module = device.createShaderModule({ code: modules[l.kernel], label: l.kernel });
      const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: l.kernel } });
      const group = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: l.args.map((a, k) => ({ binding: k, resource: resource(a) })),
      });
      return { pipeline, group, grid: l.grid };
    });
  }

  // inputs: name -> typed array of the input's dtype and element count; returns name -> typed array
  async run(feeds) {
    const { device, meta } = this;
    const q = device.queue;
    q.writeBuffer(this.flag, 0, new Uint32Array([0]));
    const arrays = meta.inputs.map((e, k) => {
      const a = feeds[e.name];
      if (!(a instanceof ARRAYS[e.dtype]) || a.length !== count(e)) {
        throw new Error(`input ${e.name}: expected a ${ARRAYS[e.dtype].name} of ${count(e)} elements`);
      }
      const bytes = new Uint8Array(pad4(a.byteLength));
      bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
      q.writeBuffer(this.inputs[k], 0, bytes);
      return a;
    });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const { pipeline, group, grid } of this.launches) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    }
    pass.end();
    const reads = [...this.outputs.map((b, k) => [b, 0, byteSize(meta.outputs[k])]), [this.flag, 0, 4]];
    const copied = new Map(meta.gpu.copies.map(([k, src]) => [k, src]));
    const staging = reads.map(([buf, offset, n], k) => {
      if (copied.has(k) || n === 0) return null;
      const s = device.createBuffer({ size: pad4(n), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      enc.copyBufferToBuffer(buf, offset, s, 0, pad4(n));
      return s;
    });
    q.submit([enc.finish()]);
    const bytes = await Promise.all(staging.map(async (s, k) => {
      if (!s) return null;
      await s.mapAsync(GPUMapMode.READ);
      const out = new Uint8Array(s.getMappedRange()).slice(0, reads[k][2]);
      s.unmap();
      s.destroy();
      return out;
    }));
    const flag = new Uint32Array(bytes[bytes.length - 1].buffer)[0];
    if (flag & FLAG_INDEX) throw new Error(`${meta.name}: a kernel met an index out of range`);
    if (flag & FLAG_INT64) throw new Error(`${meta.name}: a kernel read an int64 value outside 32 bits`);
    const outs = {};
    meta.outputs.forEach((e, k) => {
      const T = ARRAYS[e.dtype];
      if (!copied.has(k)) outs[e.name] = new T(bytes[k].buffer, 0, count(e));
    });
    for (const [k, src] of copied) {
      const e = meta.outputs[k];
      const T = ARRAYS[e.dtype];
      if (src[0] === "input") outs[e.name] = arrays[src[1]].slice();
      else if (src[0] === "output") outs[e.name] = outs[meta.outputs[src[1]].name].slice();
      else outs[e.name] = await this.readConstant(src[1], src[2], T);
    }
    return outs;
  }

  async readConstant(offset, n, T) {
    const s = this.device.createBuffer({ size: pad4(n), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.consts, offset, s, 0, pad4(n));
    this.device.queue.submit([enc.finish()]);
    await s.mapAsync(GPUMapMode.READ);
    const out = new Uint8Array(s.getMappedRange()).slice(0, n);
    s.unmap();
    s.destroy();
    return new T(out.buffer);
  }
}
