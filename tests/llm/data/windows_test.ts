import assert from "node:assert/strict";
import { slidingWindows, WindowLoader } from "../../../llm/data/windows.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../../fixtures.ts";

const verdictIds = new Gpt2Tokenizer().encode(
  await Deno.readTextFile(sharedFixture("workshop", "the-verdict.txt")),
);

Deno.test("the book's first window: batch 1, max_length 4, stride 1", () => {
  const loader = new WindowLoader(slidingWindows(verdictIds, 4, 1), {
    batchSize: 1,
    shuffle: false,
    dropLast: true,
    seed: 123,
  });
  const [first, second] = [...loader.batches(0)].slice(0, 2);
  assert.deepEqual([...first.inputs], [40, 367, 2885, 1464]);
  assert.deepEqual([...first.targets], [367, 2885, 1464, 1807]);
  assert.deepEqual([...second.inputs], [367, 2885, 1464, 1807]);
});

Deno.test("windows follow range(0, len - max_length, stride)", () => {
  const ids = Array.from({ length: 10 }, (_, i) => i);
  assert.deepEqual([...slidingWindows(ids, 4, 2).starts], [0, 2, 4]);
  assert.deepEqual([...slidingWindows(ids, 4, 3).starts], [0, 3]);
  assert.equal(slidingWindows(ids, 10, 1).count, 0);
});

Deno.test("drop_last and batch counts", () => {
  const windows = slidingWindows(Array.from({ length: 101 }, (_, i) => i), 10, 10); // 10 windows
  const make = (dropLast: boolean) =>
    new WindowLoader(windows, { batchSize: 3, shuffle: false, dropLast, seed: 1 });
  assert.equal(make(true).numBatches, 3);
  assert.equal(make(false).numBatches, 4);
  const last = [...make(false).batches()].at(-1)!;
  assert.equal(last.batchSize, 1);
  assert.deepEqual([...last.inputs].slice(0, 3), [90, 91, 92]);
});

Deno.test("shuffle is a seeded permutation per epoch, reproducible", () => {
  const windows = slidingWindows(Array.from({ length: 401 }, (_, i) => i), 4, 4); // 100 windows
  const loader = new WindowLoader(windows, {
    batchSize: 2,
    shuffle: true,
    dropLast: true,
    seed: 123,
  });
  const again = new WindowLoader(windows, {
    batchSize: 2,
    shuffle: true,
    dropLast: true,
    seed: 123,
  });
  const other = new WindowLoader(windows, {
    batchSize: 2,
    shuffle: true,
    dropLast: true,
    seed: 124,
  });
  const e0 = loader.order(0), e1 = loader.order(1);
  assert.deepEqual([...e0].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
  assert.deepEqual(e0, again.order(0));
  assert.notDeepEqual(e0, e1);
  assert.notDeepEqual(e0, other.order(0));
  const batch = loader.batch(1, 3);
  assert.equal(batch.inputs[0], windows.starts[e1[6]]);
});
