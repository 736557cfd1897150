import assert from "node:assert/strict";
import { OpenAiBpe } from "../../../llm/tokenizer/bpe.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../../fixtures.ts";

const bpe = await OpenAiBpe.fromFiles(
  sharedFixture("gpt2-tokenizer", "encoder.json"),
  sharedFixture("gpt2-tokenizer", "vocab.bpe"),
);
const tiktoken = new Gpt2Tokenizer();

Deno.test("OpenAI's own encoder.json + vocab.bpe agree with js-tiktoken on the verdict", async () => {
  const verdict = await Deno.readTextFile(sharedFixture("workshop", "the-verdict.txt"));
  const ids = bpe.encode(verdict);
  assert.equal(bpe.vocabSize, 50257);
  assert.equal(ids.length, 5145);
  assert.deepEqual(ids, tiktoken.encode(verdict));
  assert.equal(bpe.decode(ids), verdict);
});

Deno.test("both BPE implementations agree on the instruction set and MMLU text (unicode, digits)", async () => {
  const entries = JSON.parse(
    await Deno.readTextFile(sharedFixture("workshop", "instruction-data.json")),
  ) as { instruction: string; input: string; output: string }[];
  const mmlu = await Deno.readTextFile(sharedFixture("mmlu", "test", "formal_logic_test.csv"));
  const texts = [...entries.map((e) => `${e.instruction}\n${e.input}\n${e.output}`), mmlu];
  let tokens = 0;
  for (const text of texts) {
    const ours = bpe.encode(text);
    assert.deepEqual(ours, tiktoken.encode(text), text.slice(0, 60));
    assert.equal(bpe.decode(ours), text);
    tokens += ours.length;
  }
  assert.ok(tokens > 40_000, `only ${tokens} tokens compared`);
});

Deno.test("the workshop's example with <|endoftext|>", () => {
  const text = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.";
  assert.deepEqual(bpe.encode(text), tiktoken.encode(text));
  assert.equal(bpe.encode(text)[8], 50256);
});
