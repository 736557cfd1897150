import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { type Blas, loadBlas } from "../../../llm/engine/blas.ts";
import {
  planMatMul,
  registerBlasKernels,
  unregisterBlasKernels,
} from "../../../llm/engine/cpu_kernels.ts";
import { randn, relativeError, withStockKernels } from "./compare.ts";

await tf.setBackend("cpu");
const loaded = loadBlas();
const ignore = !loaded.ok;

/** Counts sgemm calls so a test can see which path a product took. */
function countingBlas(inner: Blas): Blas & { calls: number } {
  const spy = {
    ...inner,
    calls: 0,
    sgemm(...args: Parameters<Blas["sgemm"]>) {
      spy.calls++;
      inner.sgemm(...args);
    },
  };
  return spy;
}
const blas = loaded.ok ? countingBlas(loaded.blas) : undefined!;
const install = () => registerBlasKernels(blas);

/** Build a/b shapes for op(A) [M,K] and op(B) [K,N] with the given batch dims. */
function shapesFor(
  batchA: number[],
  batchB: number[],
  [m, k, n]: [number, number, number],
  transposeA: boolean,
  transposeB: boolean,
): [number[], number[]] {
  return [
    [...batchA, ...(transposeA ? [k, m] : [m, k])],
    [...batchB, ...(transposeB ? [n, k] : [k, n])],
  ];
}

const TRANSPOSES = [[false, false], [false, true], [true, false], [true, true]] as const;

/** Batch shapes for which the stock kernel's `index % batch` pairing is right. */
const STOCK_BATCHES: [number[], number[]][] = [
  [[], []],
  [[3], [3]],
  [[2, 3], [2, 3]], // attention: [batch, heads, T, d]
  [[4], []], // Linear on a 3-D input: one folded sgemm
  [[], [4]],
  [[2, 3], [3]],
  [[4], [1]],
  [[1], [5]],
];
const MKN: [number, number, number][] = [[1, 1, 1], [5, 7, 3], [33, 48, 17], [1, 96, 50]];

Deno.test({
  name: "BatchMatMul matches the stock kernel: shapes × transposes × batch broadcasting",
  ignore,
  fn() {
    install();
    let cases = 0;
    for (const [batchA, batchB] of STOCK_BATCHES) {
      for (const mkn of MKN) {
        for (const [tA, tB] of TRANSPOSES) {
          tf.tidy(() => {
            const [aShape, bShape] = shapesFor(batchA, batchB, mkn, tA, tB);
            const a = randn(aShape, cases);
            const b = randn(bShape, cases + 1000);
            const ours = tf.matMul(a, b, tA, tB);
            const stock = withStockKernels(install, () => tf.matMul(a, b, tA, tB));
            const where = `a=${aShape} b=${bShape} tA=${tA} tB=${tB}`;
            assert.deepEqual(ours.shape, stock.shape, where);
            const err = relativeError(ours.dataSync(), stock.dataSync());
            assert.ok(err <= 1e-5, `${where}: relative error ${err}`);
          });
          cases++;
        }
      }
    }
    assert.equal(cases, STOCK_BATCHES.length * MKN.length * 4);
  },
});

Deno.test({
  name: "BatchMatMul broadcasts batch dims NumPy-style where the stock kernel mis-pairs them",
  ignore,
  fn() {
    install();
    const cases: [number[], number[]][] = [[[2, 3], [2, 1]], [[2, 1], [1, 3]], [[3, 1, 2], [4, 1]]];
    for (const [batchA, batchB] of cases) {
      for (const [tA, tB] of TRANSPOSES) {
        tf.tidy(() => {
          const [aShape, bShape] = shapesFor(batchA, batchB, [4, 6, 5], tA, tB);
          const a = randn(aShape, 7);
          const b = randn(bShape, 8);
          const ours = tf.matMul(a, b, tA, tB);
          // Reference: materialise the broadcast, then every batch pairs with its own twin.
          const outBatch = ours.shape.slice(0, -2);
          const aFull = tf.broadcastTo(a, [...outBatch, ...aShape.slice(-2)]);
          const bFull = tf.broadcastTo(b, [...outBatch, ...bShape.slice(-2)]);
          const reference = withStockKernels(install, () => tf.matMul(aFull, bFull, tA, tB));
          assert.deepEqual(ours.shape, reference.shape);
          const err = relativeError(ours.dataSync(), reference.dataSync());
          assert.ok(err <= 1e-5, `a=${aShape} b=${bShape}: relative error ${err}`);
        });
      }
    }
  },
});

Deno.test({
  name: "a Linear layer on a 3-D input is one sgemm; attention batches are one sgemm each",
  ignore,
  fn() {
    install();
    tf.tidy(() => {
      blas.calls = 0;
      tf.matMul(randn([4, 8, 16], 1), randn([32, 16], 2), false, true).dataSync();
      assert.equal(blas.calls, 1);
      blas.calls = 0;
      tf.matMul(randn([2, 3, 8, 16], 3), randn([2, 3, 8, 16], 4), false, true).dataSync();
      assert.equal(blas.calls, 6);
    });
  },
});

Deno.test({
  name: "empty products and non-float32 inputs give the stock results",
  ignore,
  fn() {
    install();
    tf.tidy(() => {
      const pairs: [tf.Tensor, tf.Tensor][] = [
        [tf.zeros([0, 5]), tf.ones([5, 3])],
        [tf.ones([4, 0]), tf.ones([0, 3])],
        [
          tf.tensor2d([[1, 2], [3, 4]], undefined, "int32"),
          tf.tensor2d([[5], [6]], undefined, "int32"),
        ],
      ];
      for (const [a, b] of pairs) {
        const ours = tf.matMul(a, b);
        const stock = withStockKernels(install, () => tf.matMul(a, b));
        assert.deepEqual(ours.shape, stock.shape);
        assert.equal(ours.dtype, stock.dtype);
        assert.deepEqual(Array.from(ours.dataSync()), Array.from(stock.dataSync()));
      }
    });
  },
});

Deno.test({
  name: "mismatched inner sizes still raise tfjs's own error",
  ignore,
  fn() {
    install();
    assert.throws(() => tf.matMul(tf.ones([2, 3]), tf.ones([4, 5])), /inner shapes/);
  },
});

Deno.test({
  name: "_FusedMatMul matches stock: bias shapes × activations × transposes",
  ignore,
  fn() {
    install();
    const [m, k, n] = [6, 9, 7];
    const activations = [
      "linear",
      "relu",
      "relu6",
      "elu",
      "sigmoid",
      "prelu",
      "leakyrelu",
    ] as const;
    const biasShapes = [undefined, [n], [1, n], [m, n]];
    for (const batch of [[], [3]]) {
      for (const [tA, tB] of TRANSPOSES) {
        for (const activation of activations) {
          for (const biasShape of biasShapes) {
            tf.tidy(() => {
              const [aShape, bShape] = shapesFor(batch, [], [m, k, n], tA, tB);
              const a = randn(aShape, 11);
              const b = randn(bShape, 12);
              const bias = biasShape ? randn(biasShape, 13) : undefined;
              const prelu = activation === "prelu" ? randn([n], 14) : undefined;
              const run = () =>
                tf.fused.matMul({
                  a,
                  b,
                  transposeA: tA,
                  transposeB: tB,
                  bias,
                  activation,
                  preluActivationWeights: prelu,
                  leakyreluAlpha: 0.13,
                });
              const ours = run();
              const stock = withStockKernels(install, run);
              const where = `batch=${batch} tA=${tA} tB=${tB} ${activation} bias=${biasShape}`;
              assert.deepEqual(ours.shape, stock.shape, where);
              const err = relativeError(ours.dataSync(), stock.dataSync());
              assert.ok(err <= 1e-5, `${where}: relative error ${err}`);
            });
          }
        }
      }
    }
  },
});

Deno.test({
  name: "gradients through tf.grads run on BLAS and match the stock gradients",
  ignore,
  fn() {
    install();
    for (const [tA, tB] of TRANSPOSES) {
      tf.tidy(() => {
        const [aShape, bShape] = shapesFor([2], [2], [5, 8, 6], tA, tB);
        const a = randn(aShape, 21);
        const b = randn(bShape, 22);
        const weights = randn([2, 5, 6], 23); // makes dy non-uniform
        const bias = randn([6], 24);
        const loss = (x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.mul(
            tf.fused.matMul({
              a: x,
              b: y,
              transposeA: tA,
              transposeB: tB,
              bias,
              activation: "relu",
            }),
            weights,
          ));
        const plain = (x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.mul(tf.matMul(x, y, tA, tB), weights));
        for (const f of [loss, plain]) {
          blas.calls = 0;
          const ours = tf.grads(f)([a, b]);
          assert.ok(blas.calls >= 3, `forward and both gradients use sgemm (${blas.calls} calls)`);
          const stock = withStockKernels(install, () => tf.grads(f)([a, b]));
          for (let i = 0; i < 2; i++) {
            assert.deepEqual(ours[i].shape, stock[i].shape);
            const err = relativeError(ours[i].dataSync(), stock[i].dataSync());
            assert.ok(err <= 1e-5, `tA=${tA} tB=${tB} grad ${i}: relative error ${err}`);
          }
        }
      });
    }
  },
});

Deno.test({
  name: "unregistering restores the stock kernels",
  ignore,
  fn() {
    install();
    unregisterBlasKernels();
    blas.calls = 0;
    tf.tidy(() => tf.matMul(randn([3, 4], 1), randn([4, 2], 2)).dataSync());
    assert.equal(blas.calls, 0);
    install();
    tf.tidy(() => tf.matMul(randn([3, 4], 1), randn([4, 2], 2)).dataSync());
    assert.equal(blas.calls, 1);
    unregisterBlasKernels();
  },
});

Deno.test("planMatMul maps broadcast batches to their source matrices", () => {
  const plan = planMatMul([2, 1, 4, 5], [3, 5, 6], false, false)!;
  assert.deepEqual(plan.outShape, [2, 3, 4, 6]);
  assert.deepEqual(Array.from(plan.aBatchOf), [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(Array.from(plan.bBatchOf), [0, 1, 2, 0, 1, 2]);
  assert.equal(planMatMul([2, 3], [4, 5], false, false), undefined);
  assert.equal(planMatMul([2, 3, 4], [5, 4, 6], false, false), undefined);
  assert.equal(planMatMul([4], [4, 5], false, false), undefined);
  assert.deepEqual(planMatMul([3, 2], [4, 3], true, true)!.outShape, [2, 4]);
});

Deno.test({
  name: "small batched products run on one BLAS thread, and the thread count comes back",
  // Accelerate (macOS) offers no thread control to test.
  ignore: !loaded.ok || loaded.blas.threads() === undefined,
  fn() {
    if (!loaded.ok) throw new Error("unreachable: ignored without BLAS");
    const inner = loaded.blas;
    const before = inner.threads()!;
    assert.ok(inner.setThreads(2), "OpenBLAS sets its thread count");
    const seen: number[] = [];
    const spy: Blas = {
      ...inner,
      threads: () => inner.threads(),
      setThreads: (n: number) => inner.setThreads(n),
      sgemm(...args: Parameters<Blas["sgemm"]>) {
        seen.push(inner.threads()!);
        inner.sgemm(...args);
      },
    };
    registerBlasKernels(spy);
    try {
      tf.tidy(() => {
        // Attention-sized per-head products (m·n·k = 2^22 each), then one large product.
        const scores = tf.matMul(randn([2, 3, 256, 64], 1), randn([2, 3, 256, 64], 2), false, true);
        assert.deepEqual(seen, [1, 1, 1, 1, 1, 1]);
        assert.equal(inner.threads(), 2, "thread count restored");
        seen.length = 0;
        tf.matMul(tf.reshape(scores, [1536, 256]), randn([256, 1536], 3));
        assert.deepEqual(seen, [2]);
      });
    } finally {
      registerBlasKernels(inner);
      inner.setThreads(before);
    }
  },
});
