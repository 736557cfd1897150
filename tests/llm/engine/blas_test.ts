import assert from "node:assert/strict";
import { blasCandidates, loadBlas } from "../../../llm/engine/blas.ts";

const loaded = loadBlas();
const noBlas = !loaded.ok;

/** Plain triple loop: the definition of op(A)·op(B) for row-major storage. */
function naiveGemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * m + i] : a[i * k + p];
        const bv = transB ? b[j * k + p] : b[p * n + j];
        sum += av * bv;
      }
      out[i * n + j] = sum;
    }
  }
  return out;
}

function random(size: number, seed: number): Float32Array {
  // Small LCG: deterministic data without depending on tfjs.
  let state = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
}

Deno.test("loadBlas finds a BLAS library on this machine (or says why not)", () => {
  if (loaded.ok) {
    assert.ok(loaded.blas.path.length > 0);
    assert.ok(loaded.blas.description.length > 0);
  } else {
    assert.match(loaded.reason, /BLAS|FFI/);
  }
});

Deno.test({
  name: "sgemm matches a naive product for every transpose combination and odd sizes",
  ignore: noBlas,
  fn() {
    const blas = loaded.ok ? loaded.blas : undefined!;
    const [m, n, k] = [7, 5, 11];
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = random(m * k, 1);
        const b = random(k * n, 2);
        const c = new Float32Array(m * n);
        blas.sgemm(transA, transB, m, n, k, 1, a, transA ? m : k, b, transB ? k : n, 0, c, n);
        const expected = naiveGemm(transA, transB, m, n, k, a, b);
        for (let i = 0; i < c.length; i++) {
          assert.ok(
            Math.abs(c[i] - expected[i]) < 1e-5,
            `transA=${transA} transB=${transB} i=${i}`,
          );
        }
      }
    }
  },
});

Deno.test({
  name:
    "a one-row product (the sgemv path of token-by-token generation) matches, alpha and beta included",
  ignore: noBlas,
  fn() {
    const blas = loaded.ok ? loaded.blas : undefined!;
    const [n, k] = [37, 29];
    for (const transB of [false, true]) {
      const a = random(k, 5);
      const b = random(k * n, 6);
      const c = random(n, 7);
      const before = Float32Array.from(c);
      blas.sgemm(false, transB, 1, n, k, 0.5, a, k, b, transB ? k : n, 2, c, n);
      const product = naiveGemm(false, transB, 1, n, k, a, b);
      for (let j = 0; j < n; j++) {
        const expected = 0.5 * product[j] + 2 * before[j];
        assert.ok(
          Math.abs(c[j] - expected) < 1e-5,
          `transB=${transB} j=${j}: ${c[j]} vs ${expected}`,
        );
      }
    }
  },
});

Deno.test({
  name: "sgemm reads and writes through subarray views (zero-copy honours byteOffset)",
  ignore: noBlas,
  fn() {
    const blas = loaded.ok ? loaded.blas : undefined!;
    const [m, n, k] = [3, 4, 2];
    const aBig = random(100, 3);
    const bBig = random(100, 4);
    const cBig = new Float32Array(100).fill(42);
    const a = aBig.subarray(17, 17 + m * k);
    const b = bBig.subarray(33, 33 + k * n);
    const c = cBig.subarray(50, 50 + m * n);
    blas.sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n);
    const expected = naiveGemm(false, false, m, n, k, a, b);
    for (let i = 0; i < m * n; i++) assert.ok(Math.abs(c[i] - expected[i]) < 1e-6);
    // Nothing outside the view was touched.
    assert.equal(cBig[49], 42);
    assert.equal(cBig[50 + m * n], 42);
  },
});

Deno.test({
  name: "OpenBLAS thread count can be read and set",
  ignore: noBlas || loaded.blas.threads() === undefined,
  fn() {
    const blas = loaded.ok ? loaded.blas : undefined!;
    const before = blas.threads()!;
    assert.ok(blas.setThreads(1));
    assert.equal(blas.threads(), 1);
    blas.setThreads(before);
    assert.equal(blas.threads(), before);
  },
});

Deno.test("an explicit library path that does not exist is reported, not replaced", () => {
  const result = loadBlas({ path: "/nonexistent/libnotblas.so" });
  assert.ok(!result.ok);
  assert.match(result.reason, /\/nonexistent\/libnotblas\.so/);
});

Deno.test("the explicit path comes first in the search order", () => {
  const candidates = blasCandidates({ path: "/opt/my/libopenblas.so" });
  assert.equal(candidates[0], "/opt/my/libopenblas.so");
  if (Deno.build.os === "darwin") assert.match(candidates.join(), /Accelerate/);
  if (Deno.build.os === "linux") assert.ok(candidates.includes("libopenblas.so.0"));
});
