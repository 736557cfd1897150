/**
 * The WebAssembly binary writer (llm/engine/wasm/encoder.ts) on its own: constants at the LEB128
 * boundaries, calls by index, select, loops and memory growth, each checked by running the module.
 */
import assert from "node:assert/strict";
import { buildModule, FunctionBuilder } from "../../../llm/engine/wasm/encoder.ts";

function instantiate(functions: FunctionBuilder[]) {
  const module = new WebAssembly.Module(buildModule(functions));
  // deno-lint-ignore no-explicit-any
  return new WebAssembly.Instance(module, {}).exports as any;
}

Deno.test("i32, f32 and f64 constants survive encoding, across every LEB128 length and sign", () => {
  const values = [0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, -8193, 2 ** 31 - 1, -(2 ** 31)];
  const functions = values.map((v, i) => new FunctionBuilder(`i${i}`, [], ["i32"]).i32Const(v));
  functions.push(new FunctionBuilder("f32", [], ["f32"]).f32Const(-1.5e-7));
  functions.push(new FunctionBuilder("f64", [], ["f64"]).f64Const(Math.PI));
  const exports = instantiate(functions);
  values.forEach((v, i) => assert.equal(exports[`i${i}`](), v));
  assert.equal(exports.f32(), Math.fround(-1.5e-7));
  assert.equal(exports.f64(), Math.PI);
});

Deno.test("a loop, a call by index and select compute what they should", () => {
  // sum(n) = 0 + 1 + ... + (n − 1) by a block/loop; clamp(a, b) = min via select; twice via call.
  const sum = new FunctionBuilder("sum", ["i32"], ["i32"]);
  const [n, i, total] = [sum.param(0), sum.local("i32"), sum.local("i32")];
  sum.block().loop();
  sum.get(i).get(n).i32GeS().brIf(1);
  sum.get(total).get(i).i32Add().set(total);
  sum.get(i).i32Const(1).i32Add().set(i);
  sum.br(0).end().end();
  sum.get(total);
  const min = new FunctionBuilder("min", ["i32", "i32"], ["i32"]);
  min.get(min.param(0)).get(min.param(1)).get(min.param(0)).get(min.param(1)).i32LtS().select();
  const sumTwice = new FunctionBuilder("sumTwice", ["i32"], ["i32"]);
  sumTwice.get(sumTwice.param(0)).call(0).get(sumTwice.param(0)).call(0).i32Add();
  const exports = instantiate([sum, min, sumTwice]);
  assert.equal(exports.sum(10), 45);
  assert.equal(exports.sum(0), 0);
  assert.equal(exports.min(3, -7), -7);
  assert.equal(exports.min(-2, 5), -2);
  assert.equal(exports.sumTwice(5), 20);
});

Deno.test("the exported memory starts at one page and grows; v128 loads and stores round-trip", () => {
  const copy = new FunctionBuilder("copy4", ["i32", "i32"]);
  copy.get(copy.param(1)).get(copy.param(0)).v128Load().v128Store();
  const exports = instantiate([copy]);
  const memory = exports.memory as WebAssembly.Memory;
  assert.equal(memory.buffer.byteLength, 65536);
  memory.grow(2);
  const heap = new Float32Array(memory.buffer);
  heap.set([1.5, -2, 3.25, NaN], 40_000);
  exports.copy4(40_000 * 4, 2 * 65536);
  assert.deepEqual([...heap.subarray(2 * 16384, 2 * 16384 + 4)], [1.5, -2, 3.25, NaN]);
});

Deno.test("an imported shared memory: two instances see each other's stores, growth included", () => {
  const store = new FunctionBuilder("store", ["i32", "i32"]);
  store.get(store.param(0)).get(store.param(1)).v128Load8x4U().v128Store32Lane(0);
  const load = new FunctionBuilder("load", ["i32"], ["f32"]);
  load.get(load.param(0)).f32Load();
  const module = new WebAssembly.Module(buildModule([store, load], 2, { shared: true }));
  // The import asks for a shared memory (limits flag 0x03): an unshared one does not link.
  const unshared = new WebAssembly.Memory({ initial: 2, maximum: 65536 });
  assert.throws(() => new WebAssembly.Instance(module, { env: { memory: unshared } }), /shared/);
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
  assert.ok(memory.buffer instanceof SharedArrayBuffer);
  type Exports = {
    memory: WebAssembly.Memory;
    store(at: number, from: number): void;
    load(at: number): number;
  };
  const [a, b] = [0, 1].map(() =>
    new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as Exports
  );
  assert.equal(a.memory, memory);
  memory.grow(1);
  const at = 2 * 65536 + 64;
  new Float32Array(memory.buffer).set([6.5], at / 4);
  assert.equal(b.load(at), 6.5);
  new Uint8Array(memory.buffer).set([1, 0, 255, 7], 100);
  a.store(at + 8, 100); // the low byte of each of 4 lanes: 1, 0, 255, 7 → the first one stored
  assert.equal(new Int32Array(memory.buffer)[(at + 8) / 4], 1);
});

Deno.test("an imported unshared memory links only with an unshared memory", () => {
  const module = new WebAssembly.Module(buildModule([], 1, { shared: false }));
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
  // deno-lint-ignore no-explicit-any
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as any;
  assert.equal(exports.memory, memory);
  const shared = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  assert.throws(() => new WebAssembly.Instance(module, { env: { memory: shared } }));
});
