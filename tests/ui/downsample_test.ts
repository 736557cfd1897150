/** LTTB downsampling of long loss histories. */
import assert from "node:assert/strict";
import { lttbIndices, pickRows } from "../../server/downsample.ts";

Deno.test("lttb: exactly `threshold` increasing indices, the ends kept, peaks and dips kept", () => {
  const n = 100_000;
  const xs = Array.from({ length: n }, (_, i) => i);
  const ys = xs.map((i) => (i === 31_337 ? 50 : i === 64_000 ? -50 : Math.sin(i / 5000)));
  const picked = lttbIndices(xs, ys, 500);
  assert.equal(picked.length, 500);
  assert.equal(picked[0], 0);
  assert.equal(picked.at(-1), n - 1);
  assert.ok(picked.every((p, i) => i === 0 || p > picked[i - 1]));
  assert.ok(picked.includes(31_337), "the peak");
  assert.ok(picked.includes(64_000), "the dip");
});

Deno.test("lttb: short series are returned whole; gaps (NaN) do not break it", () => {
  assert.deepEqual(lttbIndices([1, 2, 3], [3, 2, 1], 10), [0, 1, 2]);
  const xs = Array.from({ length: 1000 }, (_, i) => i);
  const ys = xs.map((i) => (i % 7 === 0 ? NaN : i));
  const picked = lttbIndices(xs, ys, 50);
  assert.equal(picked.length, 50);
  assert.deepEqual(pickRows({ a: [10, 11, 12], b: ["x", "y", "z"] }, [0, 2]), {
    a: [10, 12],
    b: ["x", "z"],
  });
});
