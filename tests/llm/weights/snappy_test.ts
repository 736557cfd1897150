import assert from "node:assert/strict";
import { snappyCompress, snappyDecompress } from "../../../llm/weights/snappy.ts";
import { sharedFixture } from "../../fixtures.ts";

const text = (s: string) => new TextEncoder().encode(s);
const ascii = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const chars = (s: string) => [...text(s)];

Deno.test("snappy: a literal element", () => {
  // length 4, tag (4-1)<<2 = literal of 4 bytes
  assert.equal(ascii(snappyDecompress(Uint8Array.from([4, 0x0c, ...chars("abcd")]))), "abcd");
});

Deno.test("snappy: copy-1 with overlap produces a run", () => {
  // "a", then copy length 9 at offset 1 (tag = 01 | (9-4)<<2)
  const block = Uint8Array.from([10, 0x00, ...chars("a"), 0x01 | (5 << 2), 1]);
  assert.equal(ascii(snappyDecompress(block)), "a".repeat(10));
});

Deno.test("snappy: copy-1 uses the 3 high offset bits from the tag", () => {
  const prefix = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
  // literal of 300 bytes: tag 61<<2 then (300-1) as 2 little-endian bytes; copy 4 bytes at 300
  const block = Uint8Array.from([
    0xb0,
    0x02, // varint 304
    61 << 2,
    299 & 0xff,
    299 >> 8,
    ...prefix,
    0x01 | (0 << 2) | ((300 >> 8) << 5),
    300 & 0xff,
  ]);
  const out = snappyDecompress(block);
  assert.equal(out.length, 304);
  assert.deepEqual(out.subarray(300), prefix.subarray(0, 4));
});

Deno.test("snappy: copy-2 and copy-4 elements", () => {
  const copy2 = Uint8Array.from([16, 7 << 2, ...chars("abcdefgh"), 0x02 | (7 << 2), 8, 0]);
  assert.equal(ascii(snappyDecompress(copy2)), "abcdefghabcdefgh");
  const copy4 = Uint8Array.from([16, 7 << 2, ...chars("abcdefgh"), 0x03 | (7 << 2), 8, 0, 0, 0]);
  assert.equal(ascii(snappyDecompress(copy4)), "abcdefghabcdefgh");
});

Deno.test("snappy: malformed blocks give errors naming the source and the problem", () => {
  const cases: Array<[number[], RegExp]> = [
    [[5, 0x00, 97, 0x01, 2], /offset 2, but only 1 byte/],
    [[5, 0x00, 97, 0x01, 0], /offset 0/],
    [[4, 0x0c, 97, 98], /truncated Snappy element at input offset 1/],
    [[5, 0x0c, 97, 98, 99, 100], /produced 4 byte\(s\) but declares 5/],
    [[3, 0x0c, 97, 98, 99, 100], /writes past the declared uncompressed length 3/],
    [[2, 0x00, 97, 0x01 | (5 << 2), 1], /copy at input offset 3 writes past/],
    [[0x80], /truncated Snappy length varint/],
    [[4, 0x02 | (3 << 2), 1], /truncated Snappy element at input offset 1/],
  ];
  for (const [bytes, pattern] of cases) {
    assert.throws(
      () => snappyDecompress(Uint8Array.from(bytes), "x.index block 0"),
      (error: Error) =>
        error.message.startsWith("x.index block 0: ") && pattern.test(error.message),
      `bytes ${bytes}`,
    );
  }
});

Deno.test("snappy: compress → decompress round-trips real text, runs, random and large literals", async () => {
  const verdict = await Deno.readFile(sharedFixture("workshop", "the-verdict.txt"));
  let state = 1;
  const random = Uint8Array.from({ length: 70_000 }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state >>> 24;
  });
  const inputs = [
    new Uint8Array(0),
    text("a"),
    text("abc"),
    new Uint8Array(100_000),
    verdict,
    random,
  ];
  for (const input of inputs) {
    const compressed = snappyCompress(input);
    assert.deepEqual(snappyDecompress(compressed), input, `length ${input.length}`);
  }
  // Repetitive input really gets smaller (the copies are used, not just literals).
  assert.ok(snappyCompress(verdict).length < verdict.length * 0.8);
  assert.ok(snappyCompress(new Uint8Array(100_000)).length < 6000);
});
