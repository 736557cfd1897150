/**
 * Few-row products split between the calling thread and the helper thread (few_rows_gemm.ts):
 * right values at GPT-2's shapes and at ragged ones, over many products in a row (the claim
 * protocol between the threads), the helper really taking chunks, and the plain path where the
 * split does not apply.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initEngine } from "../../../llm/engine/backend.ts";
import { blasInUse, linearInference } from "../../../llm/engine/cpu_kernels.ts";
import {
  FEW_ROWS_MAX,
  fewRowsProduct,
  fewRowsStats,
  startFewRowsHelper,
  stopFewRowsHelper,
} from "../../../llm/engine/few_rows_gemm.ts";
import { SeededRandom } from "../../../llm/random.ts";

const engine = await initEngine({ backend: "cpu", log: () => {} });
const rng = new SeededRandom(11);
const values = (n: number) => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);

/** x·wᵀ in float64, the reference each float32 product is held to. */
function reference(x: Float32Array, w: Float32Array, m: number, n: number, k: number) {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += x[i * k + p] * w[j * k + p];
      out[i * n + j] = sum;
    }
  }
  return out;
}

function assertClose(got: Float32Array, want: Float64Array, k: number, what: string) {
  // float32 sums of k products of values in [-1, 1]: a few ulps of sqrt(k) per term.
  const tolerance = 1e-6 * k;
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= tolerance,
      `${what}: element ${i} is ${got[i]}, expected ${want[i]}`,
    );
  }
}

Deno.test("the cpu engine starts the helper thread when BLAS has two threads or more", () => {
  const threads = blasInUse()?.threads();
  if (threads === undefined || threads < 2) return; // a one-core machine: nothing to split
  assert.ok(engine.notes.includes("few-row products on a helper thread"), engine.notes.join("; "));
  assert.equal(fewRowsStats().helper, true);
});

Deno.test("split products equal x·wᵀ at GPT-2's shapes and ragged ones, many in a row", () => {
  if (!fewRowsStats().helper) return;
  const before = fewRowsStats();
  // [m, n, k]: decode steps of 124M (q/k/v/o, fc, proj, a slice of the head's width), then
  // widths that leave a short last chunk and the smallest products.
  const shapes = [[8, 768, 768], [8, 3072, 768], [8, 768, 3072], [16, 2304, 768], [2, 5001, 64], [
    3,
    67,
    5,
  ], [5, 1, 3]];
  const cases = shapes.map(([m, n, k]) => ({ m, n, k, x: values(m * k), w: values(n * k) }));
  const wants = cases.map(({ m, n, k, x, w }) => reference(x, w, m, n, k));
  for (let round = 0; round < 30; round++) {
    cases.forEach(({ m, n, k, x, w }, i) => {
      const out = new Float32Array(m * n).fill(NaN);
      assert.equal(fewRowsProduct(x, w, out, m, n, k), true, `[${m}, ${n}, ${k}] is split`);
      assertClose(out, wants[i], k, `round ${round}, [${m}, ${n}, ${k}]`);
    });
  }
  const after = fewRowsStats();
  assert.equal(after.products - before.products, 30 * shapes.length);
  // 30 × 7 products of up to 8 chunks each: a helper that works takes some of them.
  assert.ok(after.helperChunks > before.helperChunks, "the helper thread computed no chunk");
});

Deno.test("operands that are views into larger buffers are read and written where they lie", () => {
  if (!fewRowsStats().helper) return;
  const [m, n, k] = [4, 300, 96];
  const xAll = values(10 + m * k);
  const wAll = values(3 + n * k);
  const outAll = new Float32Array(7 + m * n + 5);
  const x = xAll.subarray(10);
  const w = wAll.subarray(3);
  const out = outAll.subarray(7, 7 + m * n);
  assert.equal(fewRowsProduct(x, w, out, m, n, k), true);
  assertClose(out, reference(x, w, m, n, k), k, "views");
  assert.ok(outAll.subarray(0, 7).every((v) => v === 0), "nothing written before the view");
  assert.ok(outAll.subarray(7 + m * n).every((v) => v === 0), "nothing written after it");
});

Deno.test("one row, more than FEW_ROWS_MAX rows, or no helper: the plain path", async () => {
  const blas = blasInUse();
  if (!blas || !fewRowsStats().helper) return;
  const [n, k] = [32, 16];
  const w = values(n * k);
  for (const m of [1, FEW_ROWS_MAX + 1]) {
    assert.equal(fewRowsProduct(values(m * k), w, new Float32Array(m * n), m, n, k), false);
  }
  stopFewRowsHelper();
  try {
    assert.equal(fewRowsStats().helper, false);
    const x = values(4 * k);
    assert.equal(fewRowsProduct(x, w, new Float32Array(4 * n), 4, n, k), false);
    // The linear layer still computes the same product, on BLAS alone.
    const got = linearInference(tf.tensor2d(x, [4, k]), tf.tensor2d(w, [n, k]), null, false)!;
    assertClose(got.dataSync() as Float32Array, reference(x, w, 4, n, k), k, "plain path");
    got.dispose();
  } finally {
    const restarted = await startFewRowsHelper(blas);
    assert.equal(restarted.ok, true);
  }
  assert.equal(fewRowsProduct(values(4 * k), w, new Float32Array(4 * n), 4, n, k), true);
});

Deno.test("one BLAS thread asked for: no helper (one core), and it comes back with two", async () => {
  const threads = blasInUse()?.threads();
  if (threads === undefined || threads < 2) return;
  try {
    const one = await initEngine({ backend: "cpu", blasThreads: 1, log: () => {} });
    assert.ok(one.notes.includes("few-row products on BLAS's threads (BLAS runs on one thread)"));
    assert.equal(fewRowsStats().helper, false);
    const [m, n, k] = [8, 40, 16];
    assert.equal(
      fewRowsProduct(values(m * k), values(n * k), new Float32Array(m * n), m, n, k),
      false,
    );
  } finally {
    await initEngine({ backend: "cpu", blasThreads: threads, log: () => {} });
  }
  assert.equal(fewRowsStats().helper, true);
});
