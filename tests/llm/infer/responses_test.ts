/**
 * Responses over instruction entries: batched, length-sorted decoding must give each entry the
 * answer one-by-one generation gives it, tagged with its index, and resume with `skip`.
 */
import assert from "node:assert/strict";
import { initEngine } from "../../../llm/engine/backend.ts";
import {
  extractResponse,
  formatInstructionPrompt,
  readInstructionData,
  splitInstructionData,
} from "../../../llm/data/instructions.ts";
import { generateResponses, type ResponseProgress } from "../../../llm/infer/responses.ts";
import { generate } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../../fixtures.ts";

await initEngine({ backend: "cpu", log: () => {} });

const tokenizer = new Gpt2Tokenizer();
const model = new GPTModel({
  vocab_size: 50257,
  context_length: 256,
  emb_dim: 16,
  n_heads: 2,
  n_layers: 2,
  drop_rate: 0,
  qkv_bias: false,
}, { seed: 5 });
const data = await readInstructionData(sharedFixture("workshop", "instruction-data.json"));
const entries = splitInstructionData(data).test.slice(0, 7);
const MAX_NEW = 12;

/** The book's loop: one entry at a time. */
async function bookResponse(index: number, eosId = 50256): Promise<string> {
  const promptText = formatInstructionPrompt(entries[index]);
  const prompt = tokenizer.encode(promptText);
  const generated = await generate(model, prompt, { maxNewTokens: MAX_NEW, eosId });
  return extractResponse(tokenizer.decode([...prompt, ...generated]).slice(promptText.length));
}

Deno.test("responses in batches equal the book's one-at-a-time responses", async () => {
  const want = await Promise.all(entries.map((_, i) => bookResponse(i)));
  const progress: ResponseProgress[] = [];
  const got = new Map<number, string>();
  for await (
    const result of generateResponses(model, tokenizer, entries, {
      maxNewTokens: MAX_NEW,
      batchSize: 3,
      onProgress: (p) => progress.push(p),
    })
  ) {
    assert.ok(!got.has(result.index), `entry ${result.index} answered once`);
    got.set(result.index, result.response);
    assert.ok(result.newTokens <= MAX_NEW);
  }
  assert.deepEqual([...got.keys()].sort((a, b) => a - b), entries.map((_, i) => i));
  assert.deepEqual(entries.map((_, i) => got.get(i)), want);
  assert.deepEqual(progress.map((p) => p.done), [1, 2, 3, 4, 5, 6, 7]);
  assert.ok(progress.every((p) => p.total === 7 && p.tokens > 0 && p.etaSeconds >= 0));
  assert.equal(progress.at(-1)!.etaSeconds, 0);
});

Deno.test("responses resume: skipped entries are not generated again", async () => {
  const skip = new Set([0, 2, 3, 6]);
  const results = [];
  for await (
    const result of generateResponses(model, tokenizer, entries, {
      maxNewTokens: MAX_NEW,
      batchSize: 2,
      skip,
    })
  ) results.push(result);
  assert.deepEqual(results.map((r) => r.index).sort(), [1, 4, 5]);
  for (const r of results) assert.equal(r.response, await bookResponse(r.index));
});

Deno.test("responses: a stop token ends an entry early, and abort stops the run", async () => {
  // The first token entry 0 gets, used as the stop token: entry 0 stops at once.
  const prompt = tokenizer.encode(formatInstructionPrompt(entries[0]));
  const [first] = await generate(model, prompt, { maxNewTokens: 1 });
  const results = [];
  for await (
    const r of generateResponses(model, tokenizer, entries.slice(0, 3), {
      maxNewTokens: MAX_NEW,
      eosId: first,
    })
  ) results.push(r);
  const entry0 = results.find((r) => r.index === 0)!;
  assert.deepEqual([entry0.newTokens, entry0.stopped, entry0.response], [0, true, ""]);

  const controller = new AbortController();
  controller.abort(new Error("user stopped"));
  await assert.rejects(async () => {
    for await (
      const _ of generateResponses(model, tokenizer, entries, { signal: controller.signal })
    ) { /* nothing arrives */ }
  }, /user stopped/);
});
