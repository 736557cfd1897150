import assert from "node:assert/strict";
import { decodeUtf8Strict, firstInvalidUtf8 } from "../../../llm/data/utf8.ts";

Deno.test("valid UTF-8 decodes, including multi-byte characters", () => {
  const bytes = new TextEncoder().encode("naïve — 𝄞 ok");
  assert.equal(firstInvalidUtf8(bytes), -1);
  assert.equal(decodeUtf8Strict(bytes, "x.txt"), "naïve — 𝄞 ok");
});

Deno.test("invalid UTF-8 is an error naming the file and the byte offset", () => {
  const cases: [number[], number][] = [
    [[0x61, 0x62, 0xff, 0x63], 2], // a byte that never occurs in UTF-8
    [[0x61, 0xc3], 1], // truncated two-byte sequence at the end
    [[0x61, 0xe2, 0x28, 0xa1], 1], // bad continuation byte
    [[0xc0, 0xaf], 0], // overlong encoding of "/"
    [[0x61, 0xed, 0xa0, 0x80], 1], // an encoded surrogate
  ];
  for (const [bytes, offset] of cases) {
    const data = Uint8Array.from(bytes);
    assert.equal(firstInvalidUtf8(data), offset, `bytes ${bytes}`);
    assert.throws(
      () => decodeUtf8Strict(data, "corpus.txt"),
      new RegExp(`corpus\\.txt: not valid UTF-8: .* at byte offset ${offset}`),
    );
  }
});
