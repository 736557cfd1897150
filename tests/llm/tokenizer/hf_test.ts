/**
 * Hugging Face tokenizers on the real Llama 3, Qwen3 and Gemma 3 files (npm, see hf_files.ts):
 * REFERENCE.md's ids, the library's own encoding, special tokens that a user types, BOS, eos
 * ids from the model folder, and bad files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import { HfTokenizer, loadHfTokenizer } from "../../../llm/tokenizer/hf.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { readModelTokenizer } from "../../../llm/infer/model_folder.ts";
import { lenmlDir, type LenmlModel, lenmlTokenizer } from "./hf_files.ts";

const MODELS: LenmlModel[] = ["llama3", "qwen3", "gemma3"];

/** REFERENCE.md, "Tokenizers and chat templates": ids without special tokens. */
const REFERENCE_IDS: Record<LenmlModel, Record<string, number[]>> = {
  llama3: {
    "Every effort moves you": [11769, 5149, 11031, 499],
    "I'm don't WE'LL 3.14159 2024-06-01": [
      40,
      2846,
      1541,
      956,
      20255,
      6,
      4178,
      220,
      18,
      13,
      9335,
      2946,
      220,
      2366,
      19,
      12,
      2705,
      12,
      1721,
    ],
  },
  qwen3: {
    "Every effort moves you": [11510, 5041, 10797, 498],
    "I'm don't WE'LL 3.14159 2024-06-01": [
      40,
      2776,
      1513,
      944,
      19677,
      6,
      4086,
      220,
      18,
      13,
      16,
      19,
      16,
      20,
      24,
      220,
      17,
      15,
      17,
      19,
      12,
      15,
      21,
      12,
      15,
      16,
    ],
  },
  gemma3: {
    "Every effort moves you": [13111, 4514, 12489, 611],
    "I'm don't WE'LL 3.14159 2024-06-01": [
      236777,
      236789,
      236757,
      1537,
      236789,
      236745,
      19716,
      236789,
      2182,
      236743,
      236800,
      236761,
      236770,
      236812,
      236770,
      236810,
      236819,
      236743,
      236778,
      236771,
      236778,
      236812,
      236772,
      236771,
      236825,
      236772,
      236771,
      236770,
    ],
  },
};

/** Text that exercises pre-tokenizers, normalizers, byte fallback and added tokens. */
const SAMPLES = [
  "Hello, World! 1234567 l'été à Zürich — naïve café",
  "日本語のテキストと中文，한국어, العربية, हिन्दी 🦙🇩🇪👩🏽‍💻",
  "  leading spaces\n\n\n\ttabs\r\nwindows   and trailing   ",
  "code: def f(x):\n    return x**2  # ok\n",
  "chat <|im_start|>user\nhi<|im_end|> <end_of_turn> <|eot_id|> done",
];

for (const name of MODELS) {
  Deno.test(`${name}: REFERENCE.md's ids, and text decodes back exactly`, async () => {
    const tokenizer = await lenmlTokenizer(name);
    for (const [text, ids] of Object.entries(REFERENCE_IDS[name])) {
      assert.deepEqual(tokenizer.encode(text, { addBos: false }), ids, text);
      assert.equal(tokenizer.decode(ids), text);
    }
    for (const text of SAMPLES) {
      assert.equal(tokenizer.decode(tokenizer.encode(text, { addBos: false })), text);
    }
  });

  Deno.test(`${name}: our encoding equals @huggingface/tokenizers' own`, async () => {
    const tokenizer = await lenmlTokenizer(name);
    const dir = lenmlDir(name);
    const library = new LibraryTokenizer(
      JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json"))),
      JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json"))),
    );
    for (const text of SAMPLES) {
      assert.deepEqual(tokenizer.encode(text), library.encode(text).ids, text);
      assert.deepEqual(
        tokenizer.encode(text, { addBos: false }),
        library.encode(text, { add_special_tokens: false }).ids,
        text,
      );
    }
  });

  Deno.test(`${name}: special-token text a user typed stays text with special: false`, async () => {
    const tokenizer = await lenmlTokenizer(name);
    const specialIds = new Set(tokenizer.specialTokens.values());
    for (const token of tokenizer.specialTokens.keys()) {
      const typed = `please ${token} ignore`;
      const plain = tokenizer.encode(typed, { special: false, addBos: false });
      assert.ok(!plain.some((id) => specialIds.has(id)), `${token} became a control token`);
      assert.equal(tokenizer.decode(plain), typed);
      // The default recognises it, as the library and transformers do.
      assert.ok(tokenizer.encode(typed, { addBos: false }).includes(tokenizer.tokenId(token)!));
    }
  });
}

Deno.test("special tokens, BOS and eos of the three files", async () => {
  const [llama, qwen, gemma] = await Promise.all(MODELS.map(lenmlTokenizer));
  // Llama 3 (the original 8B-Instruct file): BOS token, but its post-processor adds none.
  assert.equal(llama.bosId, 128000);
  assert.deepEqual(llama.prefixIds, []);
  assert.deepEqual([...llama.eosIds], [128001]);
  assert.equal(llama.vocabSize, 128256);
  // Qwen3: no BOS at all; eos_token <|im_end|>.
  assert.equal(qwen.bosId, undefined);
  assert.equal(qwen.bosToken, "");
  assert.deepEqual([...qwen.eosIds], [151645]);
  assert.equal(qwen.tokenId("<think>"), 151667);
  // Gemma 3: the post-processor adds <bos> (2), once.
  assert.equal(gemma.bosId, 2);
  assert.deepEqual(gemma.prefixIds, [2]);
  assert.deepEqual(gemma.encode("Every effort moves you"), [2, 13111, 4514, 12489, 611]);
  assert.deepEqual(gemma.encode("<bos>Every effort moves you"), [2, 13111, 4514, 12489, 611]);
  assert.deepEqual(gemma.encode("<bos>Hi", { special: false }).slice(0, 2), [2, 236820]);
  assert.deepEqual([...gemma.eosIds], [106]);
});

Deno.test("Llama 3.1/3.2's post-processor adds <|begin_of_text|>, never twice", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(lenmlDir("llama3"), "tokenizer.json")));
  const config = JSON.parse(
    await Deno.readTextFile(join(lenmlDir("llama3"), "tokenizer_config.json")),
  );
  // What Llama 3.1's and 3.2's tokenizer.json say.
  json.post_processor = {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, {
          Sequence: { id: "A", type_id: 0 },
        }],
        pair: [
          { SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } },
          { Sequence: { id: "B", type_id: 1 } },
        ],
        special_tokens: {
          "<|begin_of_text|>": {
            id: "<|begin_of_text|>",
            ids: [128000],
            tokens: ["<|begin_of_text|>"],
          },
        },
      },
    ],
  };
  const tokenizer = HfTokenizer.fromJson(json, { config, source: "llama-3.1" });
  assert.deepEqual(tokenizer.prefixIds, [128000]);
  assert.deepEqual(tokenizer.encode("Every effort moves you"), [128000, 11769, 5149, 11031, 499]);
  assert.deepEqual(tokenizer.encode("<|begin_of_text|>Every"), [128000, 11769]);
  assert.deepEqual(tokenizer.encode("Every", { addBos: false }), [11769]);
});

/** A temporary HF model folder with the Llama 3 tokenizer files linked in, plus `files`. */
async function llamaFolder(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "hf_tokenizer_" });
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.symlink(join(lenmlDir("llama3"), file), join(dir, file));
  }
  for (const [file, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, file), text);
  return dir;
}

Deno.test("eos ids come from generation_config.json and config.json too (one or a list)", async () => {
  const dir = await llamaFolder({
    "generation_config.json": JSON.stringify({ eos_token_id: [128001, 128008, 128009] }),
    "config.json": JSON.stringify({ model_type: "llama", eos_token_id: 128009 }),
  });
  try {
    const tokenizer = await loadHfTokenizer(dir);
    assert.deepEqual([...tokenizer.eosIds].sort((a, b) => a - b), [128001, 128008, 128009]);
    assert.equal(tokenizer.endOfTextId, 128001);
    assert.ok((await readModelTokenizer(dir)) instanceof HfTokenizer);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad tokenizer files are named with their problem", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hf_tokenizer_bad_" });
  const path = join(dir, "tokenizer.json");
  const fails = async (pattern: RegExp) =>
    await assert.rejects(loadHfTokenizer(dir), (error: Error) => {
      assert.match(error.message, pattern);
      return true;
    });
  try {
    await fails(new RegExp(`${path}: not found`));
    await Deno.writeTextFile(path, '{"model": {"type": "BPE", "vocab"');
    await fails(new RegExp(`${path}: not valid JSON`));
    await Deno.writeTextFile(path, JSON.stringify({ kind: "gpt2" }));
    await fails(
      /groundup's own tokenizer spec \(kind "gpt2"\), not a Hugging Face tokenizer\.json/,
    );
    await Deno.writeTextFile(path, JSON.stringify({ model_type: "llama", hidden_size: 64 }));
    await fails(/tokenizer\.json: has no "model" object/);
    await Deno.writeTextFile(path, JSON.stringify({ model: { type: "CharLevel", vocab: {} } }));
    await fails(/model type "CharLevel" is not supported \(expected BPE, WordPiece, Unigram\)/);
    const minimal = {
      model: { type: "BPE", vocab: { a: 0, b: 1 }, merges: [] },
      added_tokens: [{ id: 1 }],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
    };
    await Deno.writeTextFile(path, JSON.stringify(minimal));
    await fails(/added_tokens\[0\] needs an integer "id" and a string "content"/);
    await Deno.writeTextFile(path, JSON.stringify({ ...minimal, added_tokens: [] }));
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ eos_token: "</s>" }),
    );
    await fails(/eos_token "<\/s>" is not in the vocabulary/);
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "{}");
    await Deno.writeTextFile(join(dir, "generation_config.json"), '{"eos_token_id": "2"}');
    await fails(/generation_config\.json: eos_token_id: expected a token id or a list/);
    await Deno.writeTextFile(join(dir, "generation_config.json"), '{"eos_token_id": 7}');
    await fails(/end-of-sequence id 7 is outside the vocabulary \(size 2\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const llama = await lenmlTokenizer("llama3");
  assert.throws(
    () => llama.decode([128256]),
    /token id 128256 is outside the vocabulary \(size 128256\)/,
  );
});

Deno.test("GPT-2: eos {50256}, no BOS, and <|endoftext|> typed by a user is text", () => {
  const gpt2 = new Gpt2Tokenizer();
  assert.deepEqual([...gpt2.eosIds], [50256]);
  assert.equal(gpt2.bosId, undefined);
  const typed = "a<|endoftext|>b";
  assert.deepEqual(gpt2.encode(typed), [64, 50256, 65]);
  const plain = gpt2.encode(typed, { special: false });
  assert.ok(!plain.includes(50256));
  assert.equal(gpt2.decode(plain), typed);
});
