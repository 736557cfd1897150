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
