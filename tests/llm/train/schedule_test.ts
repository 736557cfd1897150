import assert from "node:assert/strict";
import { warmupCosineLr } from "../../../llm/train/schedule.ts";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

Deno.test("linear warmup then cosine decay, as the book's appendix D", () => {
  const options = { peakLr: 5e-4, initialLr: 3e-5, minLr: 3e-6, warmupSteps: 20, totalSteps: 120 };
  close(warmupCosineLr(0, options), 3e-5);
  close(warmupCosineLr(10, options), 3e-5 + 10 * (5e-4 - 3e-5) / 20);
  close(warmupCosineLr(20, options), 5e-4); // end of warmup: peak
  close(warmupCosineLr(70, options), 3e-6 + (5e-4 - 3e-6) / 2); // halfway through the cosine
  close(warmupCosineLr(120, options), 3e-6);
  for (let step = 21; step <= 120; step++) {
    assert.ok(
      warmupCosineLr(step, options) < warmupCosineLr(step - 1, options),
      `decreasing at ${step}`,
    );
  }
  close(warmupCosineLr(0, { peakLr: 1, warmupSteps: 0, totalSteps: 10 }), 1);
  assert.throws(
    () => warmupCosineLr(0, { peakLr: 1, warmupSteps: 11, totalSteps: 10 }),
    /warmupSteps/,
  );
});
