/**
 * Incremental decoding equals one-shot decoding, token by token, on long multilingual text with
 * emoji, for the real Llama 3, Qwen3 and Gemma 3 tokenizers, GPT-2, and a SentencePiece-style
 * decoder that strips the leading space (Llama 2 / Phi-3 layout).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { IncrementalDecoder } from "../../../llm/tokenizer/stream.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { HfTokenizer } from "../../../llm/tokenizer/hf.ts";
import type { Tokenizer } from "../../../llm/tokenizer/mod.ts";
import { lenmlDir, lenmlTokenizer } from "./hf_files.ts";

/** Many scripts, combining marks, emoji with skin tones, ZWJ sequences and flags, code. */
const TEXT = [
  "Every effort moves you toward finding an ideal new way to practice something!",
  "Zürich, São Paulo, Kraków, Ærøskøbing — naïve façades; Ελληνικά; Русский текст.",
  "日本語の文章とカタカナ、漢字。中文句子，标点符号！한국어 문장입니다.",
  "العربية من اليمين إلى اليسار، עברית גם כן. हिन्दी देवनागरी लिपि में। ภาษาไทย",
  "Emoji: 🦙🦙 👩🏽‍💻 👨‍👩‍👧‍👦 🇩🇪🇯🇵 🏳️‍🌈 ❤️‍🔥 e\u0301 (combining) 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓂀",
  "```ts\nconst x = [1, 2, 3].map((n) => n ** 2); // ✓\n```\n\n\tTabs,   spaces   and\r\nlines.",
].join("\n\n").repeat(3);

/** Decodes `ids` one at a time; returns the pieces (flush last). */
function stream(tokenizer: Pick<Tokenizer, "decode">, ids: number[], prefix: number[] = []) {
  const decoder = new IncrementalDecoder(tokenizer, prefix);
  const pieces = ids.map((id) => decoder.push(id));
  pieces.push(decoder.flush());
  return pieces;
}

function assertStreamsLikeOneShot(tokenizer: Tokenizer, text: string) {
  const ids = tokenizer.encode(text, { addBos: false });
  const pieces = stream(tokenizer, ids);
  assert.equal(pieces.join(""), tokenizer.decode(ids));
  // Qwen3 normalizes to NFC (e + U+0301 comes back as é); the others give the text back as is.
  assert.equal(pieces.join("").normalize("NFC"), text.normalize("NFC"));
  assert.ok(pieces.every((p) => !p.includes("\uFFFD")), "a piece split a character");
  assert.ok(pieces.some((p) => p === ""), "some token ends inside a character and is held back");
  // After a prompt: the text after the prompt's, whatever the first window holds.
  const cut = Math.floor(ids.length / 2);
  const after = stream(tokenizer, ids.slice(cut), ids.slice(0, cut)).join("");
  assert.equal(after, tokenizer.decode(ids).slice(tokenizer.decode(ids.slice(0, cut)).length));
}

for (const name of ["llama3", "qwen3", "gemma3"] as const) {
  Deno.test(`incremental decoding: ${name} equals one-shot decoding`, async () => {
    assertStreamsLikeOneShot(await lenmlTokenizer(name), TEXT);
  });
}

Deno.test("incremental decoding: GPT-2 equals one-shot decoding", () => {
  assertStreamsLikeOneShot(new Gpt2Tokenizer(), TEXT);
});

Deno.test("incremental decoding: invalid bytes and an unfinished character at the end", async () => {
  const gemma = await lenmlTokenizer("gemma3");
  const byte = (b: number) =>
    gemma.tokenId(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)!;
  // A stray continuation byte, then text; then the first three bytes of 🦙 (F0 9F A6 99).
  const ids = [
    byte(0x80),
    ...gemma.encode("ok", { addBos: false }),
    byte(0xf0),
    byte(0x9f),
    byte(0xa6),
  ];
  const decoder = new IncrementalDecoder(gemma);
  const pieces = ids.map((id) => decoder.push(id));
  assert.deepEqual(pieces.slice(0, 2), ["", "\uFFFDok"]);
  assert.deepEqual(pieces.slice(2), ["", "", ""]);
  assert.equal(decoder.flush(), "\uFFFD");
  assert.equal(gemma.decode(ids), "\uFFFDok\uFFFD");
});

Deno.test("incremental decoding: a decoder that strips the leading space (Llama 2 / Phi-3)", async () => {
  // Gemma 3's vocabulary with the SentencePiece layout of Llama 2 and Phi-3's tokenizer.json:
  // "▁" prepended to the text, and the decoder strips the first space of the whole text.
  const dir = lenmlDir("gemma3");
  const json = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
  json.normalizer = {
    type: "Sequence",
    normalizers: [{ type: "Prepend", prepend: "▁" }, {
      type: "Replace",
      pattern: { String: " " },
      content: "▁",
    }],
  };
  json.pre_tokenizer = null;
  json.post_processor = null;
  json.decoder = {
    type: "Sequence",
    decoders: [
      { type: "Replace", pattern: { String: "▁" }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 },
    ],
  };
  const tokenizer = HfTokenizer.fromJson(json, { source: "sentencepiece-style" });
  const text = "Every effort moves you 🦙 — naïve 日本語 words";
  const ids = tokenizer.encode(text, { addBos: false });
  assert.equal(tokenizer.idToToken(ids[1]), "▁effort");
  // Decoding each token alone loses every space; the stream keeps them.
  assert.notEqual(ids.map((id) => tokenizer.decode([id])).join(""), text);
  assert.equal(tokenizer.decode(ids), text);
  assert.equal(stream(tokenizer, ids).join(""), text);
  assert.equal(
    stream(tokenizer, ids.slice(3), ids.slice(0, 3)).join(""),
    " you 🦙 — naïve 日本語 words",
  );
});
