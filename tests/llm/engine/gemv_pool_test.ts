/**
 * Packed GEMV on several threads (llm/engine/gemv_pool.ts): the split products bit for bit
 * equal to one thread's (the same kernel on every row, whichever thread runs it) for Q8_0 and
 * bf16, odd row counts, fewer rows than threads, arenas opened before and after the workers
 * start, memory grown under them; a model's decoding unchanged; a failing chunk reported
 * instead of hanging; and a process using the workers exiting by itself. Where it matters the
 * main thread leaves every chunk to the workers (`setLeaveRowsToWorkers`), so that what the
 * workers compute is what gets checked (otherwise a fast main thread may take every chunk).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../../../llm/engine/backend.ts";
import {
  closeArena,
  gemvThreads,
  gemvThreadsError,
  gemvWorkerChunks,
  openArena,
  runRows,
  setGemvThreads,
  setLeaveRowsToWorkers,
  setMinBytesPerThread,
  setSplitAdaptation,
} from "../../../llm/engine/gemv_pool.ts";
import { blasInUse } from "../../../llm/engine/cpu_kernels.ts";
import { GEMV_MAX_ROWS, PackedMatrix, type PackedType } from "../../../llm/engine/packed_matrix.ts";
import { instantiatePackedKernels } from "../../../llm/engine/wasm/packed_kernels.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import { generate } from "../../../llm/model/generate.ts";
import { SeededRandom } from "../../../llm/random.ts";

await initEngine({ backend: "cpu", log: () => {} });
// Split every product, however small and whether or not splitting has been faster, so that the
// tiny test matrices reach the workers.
setMinBytesPerThread(0);
setSplitAdaptation(false);

function randomValues(n: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => 2 * rng.next() - 1);
}

/**
 * x·Wᵀ for one row with `threads` threads (asserting that they run); `workersOnly`: the main
 * thread takes no chunk.
 */
function productOn(
  threads: number,
  matrix: PackedMatrix,
  x: Float32Array,
  workersOnly = false,
): Float32Array {
  setGemvThreads(threads);
  assert.equal(gemvThreads(), threads, gemvThreadsError());
  const previous = setLeaveRowsToWorkers(workersOnly);
  try {
    return matrix.multiply(x, 1);
  } finally {
    setLeaveRowsToWorkers(previous);
  }
}

/** The same bits, NaN and -0 included. */
function assertSameBits(got: Float32Array, want: Float32Array, label: string): void {
  assert.equal(got.length, want.length, label);
  assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), label);
}

const CASES: { type: PackedType; rows: number; cols: number; threads: number }[] = [
  { type: "Q8_0", rows: 1001, cols: 32 * 24, threads: 2 }, // odd: ranges of 500 and 501
  { type: "Q8_0", rows: 37, cols: 32 * 5, threads: 3 },
  { type: "Q8_0", rows: 2, cols: 64, threads: 3 }, // fewer rows than threads
  { type: "BF16", rows: 999, cols: 16 * 48, threads: 2 },
  { type: "BF16", rows: 1, cols: 16 * 3, threads: 2 },
  { type: "BF16", rows: 5, cols: 16 * 7, threads: 4 },
];

for (const { type, rows, cols, threads } of CASES) {
  Deno.test(`${type} [${rows}, ${cols}] on ${threads} threads = on one, bit for bit`, () => {
    const matrix = PackedMatrix.fromFloat32(type, rows, cols, randomValues(rows * cols, rows));
    try {
      for (let trial = 0; trial < 3; trial++) {
        // Threads first: the output scratch then holds the last trial's values, so rows a
        // worker failed to write would show.
        const x = randomValues(cols, 1000 * trial + cols);
        const before = gemvWorkerChunks();
        const byWorkers = productOn(threads, matrix, x, true);
        if (rows > 1) assert.ok(gemvWorkerChunks() > before, "the workers ran the chunks");
        const shared = productOn(threads, matrix, x);
        const one = productOn(1, matrix, x);
        assertSameBits(byWorkers, one, `trial ${trial}, workers only`);
        assertSameBits(shared, one, `trial ${trial}`);
        // The one-thread result is the product itself (not, say, zeros both ways), up to the
        // rounding of the input (Q8_0 products may quantize x to int8 per block: < 1/127 of it).
        const first = matrix.decodeRows(0, 1);
        const dot = first.reduce((sum, w, i) => sum + w * x[i], 0);
        const size = first.reduce((sum, w, i) => sum + Math.abs(w * x[i]), 0);
        assert.ok(Math.abs(one[0] - dot) <= 0.01 * size, `${one[0]} vs ${dot}`);
      }
    } finally {
      matrix.dispose();
    }
  });
}

Deno.test("choosing per product between one thread and a split keeps every result the same", () => {
  // The pool times both ways and takes the faster, trying the other now and then: whichever it
  // takes, product after product, the bits are the one-thread bits.
  const matrix = PackedMatrix.fromFloat32("Q8_0", 300, 256, randomValues(300 * 256, 21));
  const inputs = Array.from({ length: 40 }, (_, i) => randomValues(256, 100 + i));
  try {
    const want = inputs.map((x) => productOn(1, matrix, x));
    setSplitAdaptation(true);
    const got = inputs.map((x) => productOn(2, matrix, x));
    got.forEach((y, i) => assertSameBits(y, want[i], `product ${i}`));
  } finally {
    setSplitAdaptation(false);
    matrix.dispose();
  }
});

Deno.test("a prompt's product (Q8_0 tiles decoded on 3 threads, then sgemm) = on one thread", () => {
  const [rows, cols, n] = [700, 32 * 40, 12];
  const matrix = PackedMatrix.fromFloat32("Q8_0", rows, cols, randomValues(rows * cols, 11));
  try {
    assert.ok(n >= GEMV_MAX_ROWS, "the tiled path");
    const x = randomValues(n * cols, 12);
    setGemvThreads(3);
    assert.equal(gemvThreads(), 3);
    setLeaveRowsToWorkers(true);
    const split = matrix.multiply(x, n, undefined, blasInUse());
    setLeaveRowsToWorkers(false);
    setGemvThreads(1);
    assertSameBits(split, matrix.multiply(x, n, undefined, blasInUse()), "tiled");
  } finally {
    matrix.dispose();
  }
});

Deno.test("a matrix made after the workers started (the arena grown under them) splits right", () => {
  const small = PackedMatrix.fromFloat32("Q8_0", 64, 64, randomValues(64 * 64, 1));
  const x = randomValues(64, 2);
  productOn(2, small, x); // the workers are running and hold the arena
  // Several MB more in the same arena: its shared memory grows while the workers wait.
  const large = PackedMatrix.fromFloat32("Q8_0", 3000, 1024, randomValues(3000 * 1024, 3));
  const xLarge = randomValues(1024, 4);
  try {
    const split = productOn(2, large, xLarge, true);
    assertSameBits(split, productOn(1, large, xLarge), "grown arena");
  } finally {
    large.dispose();
    small.dispose();
  }
});

/** A Q8_0 matrix written straight into a fresh kernel instance (its own arena). */
function arenaWithMatrix(rows: number, blocks: number, seed: number) {
  const kernels = instantiatePackedKernels()!;
  const rowBytes = blocks * 34;
  const w = 64;
  const align = (n: number) => Math.ceil(n / 64) * 64;
  const xq = align(w + rows * rowBytes);
  const xs = align(xq + blocks * 128);
  const y = align(xs + blocks * 4);
  kernels.memory.grow(Math.ceil((y + rows * 4) / 65536));
  const bytes = new Uint8Array(kernels.memory.buffer);
  const rng = new SeededRandom(seed);
  for (let i = w; i < xs; i++) bytes[i] = Math.floor(rng.next() * 256);
  for (let row = 0; row < rows; row++) {
    for (let b = 0; b < blocks; b++) bytes.set([0x00, 0x3c], w + row * rowBytes + b * 34); // d = 1
  }
  new Float32Array(kernels.memory.buffer, xs, blocks).fill(0.5);
  const job = { kernel: "q8Gemv" as const, w, rowBytes, inputs: [xq, xs], y, rows, width: blocks };
  /** y, read and then overwritten with NaN (so that rows nobody writes next time show). */
  const result = () => {
    const view = new Float32Array(kernels.memory.buffer, y, rows);
    const values = view.slice();
    view.fill(NaN);
    return values;
  };
  return { kernels, job, result };
}

Deno.test("two arenas, one opened after the workers started, one closed: each splits right", () => {
  setGemvThreads(2);
  assert.equal(gemvThreads(), 2);
  const a = arenaWithMatrix(301, 3, 7);
  const aId = openArena(a.kernels.memory); // announced to running workers
  setGemvThreads(1);
  runRows(a.kernels, aId, a.job);
  const aOne = a.result();
  setGemvThreads(3); // a new pool: adopts the arenas already open
  assert.equal(gemvThreads(), 3);
  setLeaveRowsToWorkers(true);
  const b = arenaWithMatrix(257, 5, 8);
  const bId = openArena(b.kernels.memory);
  runRows(a.kernels, aId, a.job);
  assertSameBits(a.result(), aOne, "arena a");
  runRows(b.kernels, bId, b.job);
  const bThreads = b.result();
  setLeaveRowsToWorkers(false);
  closeArena(aId);
  setGemvThreads(1);
  runRows(b.kernels, bId, b.job);
  assertSameBits(bThreads, b.result(), "arena b");
  closeArena(bId);
});

Deno.test("a chunk whose kernel traps fails the product instead of hanging", () => {
  setGemvThreads(2);
  assert.equal(gemvThreads(), 2);
  const { kernels, job, result } = arenaWithMatrix(2, 1, 9);
  const id = openArena(kernels.memory);
  try {
    setGemvThreads(1);
    runRows(kernels, id, job);
    const want = result();
    setGemvThreads(2);
    // Row 0 lies in memory, row 1 (a chunk of its own) 4 GiB past it (when split: one thread
    // runs the rows at the kernel's own stride).
    const farRows = { ...job, rowBytes: 2 ** 32 - 64 - 1024 };
    setLeaveRowsToWorkers(true);
    assert.throws(() => runRows(kernels, id, farRows), /worker thread's kernel failed/);
    setLeaveRowsToWorkers(false);
    // Whoever takes row 1 now (this thread or the worker), the product fails.
    assert.throws(() => runRows(kernels, id, farRows), /out of bounds|kernel failed/);
    // And the pool still works, the failure not carried over.
    runRows(kernels, id, job);
    assertSameBits(result(), want, "after the failures");
  } finally {
    setLeaveRowsToWorkers(false);
    closeArena(id);
  }
});

Deno.test("a quantized model decodes the same tokens and logits on 2 threads as on 1", async () => {
  const dir = new URL("../../fixtures/hf/qwen3/", import.meta.url).pathname;
  const { model } = await loadHfModel(dir, { quantize: "int8" });
  try {
    const run = async (threads: number) => {
      setGemvThreads(threads);
      assert.equal(gemvThreads(), threads);
      setLeaveRowsToWorkers(threads > 1); // every split product's rows on the workers
      // One position: the packed GEMV (several would go through tiles and sgemm).
      const logits = tf.tidy(() =>
        model.forward(tf.tensor2d([[17]], undefined, "int32")).dataSync() as Float32Array
      );
      const tokens = await generate(model, [3, 141, 59, 26], { maxNewTokens: 10, temperature: 0 });
      return { logits, tokens };
    };
    const two = await run(2);
    setLeaveRowsToWorkers(false);
    const one = await run(1);
    assertSameBits(two.logits, one.logits, "logits");
    assert.deepEqual(two.tokens, one.tokens);
  } finally {
    setLeaveRowsToWorkers(false);
    model.dispose();
  }
});

Deno.test("initEngine's thread count is the GEMV's; 1 means no workers", async () => {
  await initEngine({ backend: "cpu", blasThreads: 1, log: () => {} });
  assert.equal(gemvThreads(), 1);
  await initEngine({ backend: "cpu", blasThreads: 2, log: () => {} });
  assert.equal(gemvThreads(), 2);
});

Deno.test("a process that multiplied on worker threads exits by itself", async () => {
  const module = (path: string) => new URL(`../../../llm/engine/${path}`, import.meta.url).href;
  const script = `
    import { gemvThreads, setGemvThreads, setMinBytesPerThread } from "${module("gemv_pool.ts")}";
    import { PackedMatrix } from "${module("packed_matrix.ts")}";
    setGemvThreads(2);
    setMinBytesPerThread(0);
    const m = PackedMatrix.fromFloat32("Q8_0", 3, 32, new Float32Array(96).fill(0.25));
    const y = m.multiply(new Float32Array(32).fill(2), 1);
    console.log(gemvThreads(), Array.from(y).join(","));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    cwd: new URL("../../../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  setGemvThreads(1);
  const m = PackedMatrix.fromFloat32("Q8_0", 3, 32, new Float32Array(96).fill(0.25));
  const y = m.multiply(new Float32Array(32).fill(2), 1);
  m.dispose();
  assert.equal(new TextDecoder().decode(output.stdout).trim(), `2 ${Array.from(y).join(",")}`);
});
