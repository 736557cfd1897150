import assert from "node:assert/strict";
import { crc32c, maskCrc, unmaskCrc } from "../../../llm/weights/crc32c.ts";

/** Bit-at-a-time CRC32C straight from the definition, to check the sliced tables against. */
function referenceCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc & 1) ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

Deno.test("crc32c matches the published check values (RFC 3720 B.4, '123456789')", () => {
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  const descending = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(ascending), 0x46dd794e);
  assert.equal(crc32c(descending), 0x113fdb5c);
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c agrees with the bitwise definition for every length 0..80 and odd offsets", () => {
  const data = pseudoRandomBytes(200, 7);
  for (let length = 0; length <= 80; length++) {
    for (const start of [0, 1, 3, 5]) {
      const slice = data.subarray(start, start + length);
      assert.equal(crc32c(slice), referenceCrc32c(slice), `length ${length} at ${start}`);
    }
  }
});

Deno.test("crc32c extends: crc(a ++ b) = crc32c(b, crc32c(a))", () => {
  const data = pseudoRandomBytes(1000, 42);
  const whole = crc32c(data);
  for (const split of [0, 1, 7, 8, 9, 500, 999, 1000]) {
    assert.equal(crc32c(data.subarray(split), crc32c(data.subarray(0, split))), whole);
  }
});

Deno.test("maskCrc/unmaskCrc are inverses and masking changes the value", () => {
  for (const value of [0, 1, 0x12345678, 0xffffffff, crc32c(new TextEncoder().encode("foo"))]) {
    const masked = maskCrc(value);
    assert.notEqual(masked, value);
    assert.notEqual(maskCrc(masked), masked);
    assert.equal(unmaskCrc(masked), value);
    assert.equal(unmaskCrc(unmaskCrc(maskCrc(maskCrc(value)))), value);
  }
  // A value stored by TensorFlow: the masked CRC of float32 0.5 in half_plus_two_cpu's index.
  assert.equal(maskCrc(crc32c(new Uint8Array(new Float32Array([0.5]).buffer))), 0x1f273806);
});
