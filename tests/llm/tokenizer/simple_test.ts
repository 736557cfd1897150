import assert from "node:assert/strict";
import { buildVocabulary, SimpleTokenizer, splitSimple } from "../../../llm/tokenizer/simple.ts";
import { sharedFixture } from "../../fixtures.ts";

const verdict = await Deno.readTextFile(sharedFixture("workshop", "the-verdict.txt"));

Deno.test("regex tokenizer on the verdict: 4,690 tokens, 1,130 unique, vocabulary 1,132", () => {
  const tokens = splitSimple(verdict);
  assert.equal(tokens.length, 4690);
  assert.equal(new Set(tokens).size, 1130);
  const vocabulary = buildVocabulary(tokens);
  assert.equal(vocabulary.length, 1132);
  assert.deepEqual(vocabulary.slice(-2), ["<|endoftext|>", "<|unk|>"]);
  // The book's first tokens and sorted vocabulary start.
  assert.deepEqual(tokens.slice(0, 5), ["I", "HAD", "always", "thought", "Jack"]);
  assert.deepEqual(vocabulary.slice(0, 3), ["!", '"', "'"]);
});

Deno.test("regex tokenizer decodes as the book's SimpleTokenizerV1 does", () => {
  const tokenizer = SimpleTokenizer.fromText(verdict);
  const text = `"It's the last he painted, you know," Mrs. Gisburn said with pardonable pride.`;
  const ids = tokenizer.encode(text);
  // The ids the book prints for this sentence.
  assert.deepEqual(ids, [
    1,
    56,
    2,
    850,
    988,
    602,
    533,
    746,
    5,
    1126,
    596,
    5,
    1,
    67,
    7,
    38,
    851,
    1108,
    754,
    793,
    7,
  ]);
  // The book prints exactly this: the space before punctuation goes, the one after a quote stays.
  assert.equal(
    tokenizer.decode(ids),
    `" It' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.`,
  );
  // Re-encoding the decoded text gives the same ids.
  assert.deepEqual(tokenizer.encode(tokenizer.decode(ids)), ids);
});

Deno.test("regex tokenizer maps unknown words to <|unk|> and keeps <|endoftext|>", () => {
  const tokenizer = SimpleTokenizer.fromText(verdict);
  const text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace.";
  const ids = tokenizer.encode(text);
  const unk = tokenizer.vocabulary.indexOf("<|unk|>");
  assert.equal(ids[0], unk); // "Hello" is not in the story
  assert.ok(ids.includes(tokenizer.endOfTextId!));
  assert.equal(
    tokenizer.decode(ids),
    "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>.",
  );
});

Deno.test("regex tokenizer rejects ids outside its vocabulary", () => {
  const tokenizer = SimpleTokenizer.fromText("a b c");
  assert.throws(() => tokenizer.decode([99]), /outside the vocabulary/);
});
