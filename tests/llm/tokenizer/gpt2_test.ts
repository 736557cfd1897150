import assert from "node:assert/strict";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../../fixtures.ts";

Deno.test("GPT-2 BPE: the verdict is 5,145 tokens and decodes back exactly", async () => {
  const verdict = await Deno.readTextFile(sharedFixture("workshop", "the-verdict.txt"));
  const tokenizer = new Gpt2Tokenizer();
  const ids = tokenizer.encode(verdict);
  assert.equal(ids.length, 5145);
  assert.deepEqual(ids.slice(0, 4), [40, 367, 2885, 1464]);
  assert.equal(tokenizer.decode(ids), verdict);
});

Deno.test("GPT-2 BPE: the workshop's example sentence with <|endoftext|>", () => {
  const tokenizer = new Gpt2Tokenizer();
  const text = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.";
  assert.deepEqual(tokenizer.encode(text), [
    15496,
    11,
    466,
    345,
    588,
    8887,
    30,
    220,
    50256,
    554,
    262,
    4252,
    18250,
    8812,
    2114,
    1659,
    617,
    34680,
    27271,
    13,
  ]);
});

Deno.test("GPT-2 BPE: <|endoftext|> is an error when not allowed", () => {
  const tokenizer = new Gpt2Tokenizer([]);
  assert.throws(() => tokenizer.encode("a <|endoftext|> b"));
});
