/**
 * The Q8_0 GEMV kernel alone (llm/engine/wasm/packed_kernels.ts `q8Gemv`): GMAC/s (multiply-adds
 * per second, one thread) of its unrollings, in one process, over GPT-2 124M's and Qwen3-0.6B's
 * matrix shapes and a 4096×4096 one. Each variant is its own module instance holding the same
 * random weights; the input is quantized once (`quantizeActivationsQ8_0`), as a call does.
 *
 *   deno run -A bench/q8_gemv.ts [--shapes 4096x4096,2304x768] [--seconds 0.3]
 *
 * Variants: `rowsPerStep` output rows sharing each block's input loads, `groupBlocks` four blocks
 * per iteration of one row with their scales as one vector, `relaxedDot` relaxed SIMD's
 * i8×i7 dot product (where the engine has it) instead of i32x4.dot_i16x8_s; `chosen` names
 * what the module uses. Rows read together are separate memory streams: shapes larger than the
 * caches show what that costs.
 * Every variant's output is checked against the default's first. Prints one JSON line per shape.
 */
import { buildModule } from "../llm/engine/wasm/encoder.ts";
import {
  Q8_GEMV_SHAPE,
  q8GemvBuilder,
  type Q8GemvShape,
} from "../llm/engine/wasm/packed_kernels.ts";
import {
  quantizeActivationsQ8_0,
  quantizeQ8_0Into,
  toMagnitudeSign,
} from "../llm/engine/packed_matrix.ts";
import { flag } from "./common.ts";
import { SeededRandom } from "../llm/random.ts";

const SHAPES = flag(
  "shapes",
  // 4096²; GPT-2 124M: qkv, attention out, MLP up, MLP down, head; Qwen3-0.6B: q, k/v, o, MLP
  // gate/up, MLP down.
  "4096x4096,2304x768,768x768,3072x768,768x3072,50257x768,2048x1024,1024x1024,1024x2048," +
    "3072x1024,1024x3072",
).split(",").map((s) => s.split("x").map(Number) as [number, number]);
const seconds = Number(flag("seconds", "0.3"));

const VARIANTS: Record<string, Q8GemvShape> = {
  "1 row, 4 blocks, dot_i16x8": { rowsPerStep: 1, groupBlocks: true, relaxedDot: false },
  "1 row, 1 block, dot_i16x8": { rowsPerStep: 1, groupBlocks: false, relaxedDot: false },
  "2 rows, dot_i16x8": { rowsPerStep: 2, groupBlocks: false, relaxedDot: false },
  "4 rows, dot_i16x8": { rowsPerStep: 4, groupBlocks: false, relaxedDot: false },
};
if (Q8_GEMV_SHAPE.relaxedDot) {
  VARIANTS["1 row, 4 blocks, relaxed dot"] = { ...Q8_GEMV_SHAPE, groupBlocks: true };
  VARIANTS["4 rows, relaxed dot"] = { ...Q8_GEMV_SHAPE, rowsPerStep: 4, groupBlocks: false };
}
const chosen = Object.entries(VARIANTS).find(([, shape]) =>
  JSON.stringify(shape) === JSON.stringify(Q8_GEMV_SHAPE)
)?.[0];

interface Kernel {
  memory: WebAssembly.Memory;
  q8Gemv(w: number, xq: number, xs: number, y: number, rows: number, blocks: number): void;
}

const kernels = Object.entries(VARIANTS).map(([name, shape]) => {
  const module = new WebAssembly.Module(buildModule([q8GemvBuilder(shape)]));
  const kernel = new WebAssembly.Instance(module, {}).exports as unknown as Kernel;
  return { name, kernel, relaxed: shape.relaxedDot };
});

const rng = new SeededRandom(1);
for (const [rows, cols] of SHAPES) {
  const blocks = cols / 32;
  const weightBytes = rows * blocks * 34;
  const packed = new Uint8Array(weightBytes);
  quantizeQ8_0Into(Float32Array.from({ length: rows * cols }, () => 2 * rng.next() - 1), packed);
  const x = Float32Array.from({ length: cols }, () => 2 * rng.next() - 1);
  const q = new Int16Array(cols);
  const scales = new Float32Array(blocks);
  quantizeActivationsQ8_0(x, q, scales);
  const line: Record<string, unknown> = {
    shape: `${rows}x${cols}`,
    mb: +(weightBytes / 1e6).toFixed(1),
  };
  let reference: Float32Array | undefined;
  const calls = kernels.map(({ name, kernel, relaxed }) => {
    // Layout: weights, then the input (int16 values, float32 scales), then the output.
    const xqAt = 64 + Math.ceil(weightBytes / 64) * 64;
    const xsAt = xqAt + cols * 2;
    const yAt = xsAt + blocks * 4;
    const need = yAt + rows * 4;
    const have = kernel.memory.buffer.byteLength;
    if (need > have) kernel.memory.grow(Math.ceil((need - have) / 65536));
    new Uint8Array(kernel.memory.buffer, 64, weightBytes).set(packed);
    const xq = new Uint8Array(kernel.memory.buffer, xqAt, cols * 2);
    if (relaxed) toMagnitudeSign(q, xq);
    else xq.set(new Uint8Array(q.buffer));
    new Float32Array(kernel.memory.buffer, xsAt, blocks).set(scales);
    const call = () => kernel.q8Gemv(64, xqAt, xsAt, yAt, rows, blocks);
    call();
    const y = new Float32Array(kernel.memory.buffer, yAt, rows).slice();
    reference ??= y;
    for (let o = 0; o < rows; o++) {
      if (Math.abs(y[o] - reference[o]) > 1e-4 * (1 + Math.abs(reference[o]))) {
        throw new Error(`${name} [${rows}, ${cols}] row ${o}: ${y[o]} vs ${reference[o]}`);
      }
    }
    return { name, call, best: Infinity };
  });
  // Best of 5 timed batches per variant, the variants taking turns (the machine's load then
  // falls on all alike), each batch about `seconds` / 5 long.
  const perBatch = Math.max(1, Math.round((seconds / 5) * 8e9 / (rows * cols)));
  for (let batch = 0; batch < 5; batch++) {
    for (const variant of calls) {
      const start = performance.now();
      for (let i = 0; i < perBatch; i++) variant.call();
      variant.best = Math.min(variant.best, (performance.now() - start) / 1000 / perBatch);
    }
  }
  for (const { name, best } of calls) line[name] = +((rows * cols) / best / 1e9).toFixed(2);
  console.log(JSON.stringify({ bench: "q8-gemv", unit: "GMAC/s", chosen, ...line }));
}
