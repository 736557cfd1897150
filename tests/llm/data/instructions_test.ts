import assert from "node:assert/strict";
import {
  extractResponse,
  findDuplicates,
  formatInstructionExample,
  formatInstructionPrompt,
  parseInstructionData,
  parsePromptTemplate,
  promptTemplate,
  readInstructionData,
  splitInstructionData,
  tokenizeInstructions,
  tokenizeSplits,
} from "../../../llm/data/instructions.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";

const DATA = sharedFixture("workshop", "instruction-data.json");

Deno.test("instruction data: 1,100 entries, 775 without input; the book's split is 935 / 110 / 55 in order", async () => {
  const entries = await readInstructionData(DATA);
  assert.equal(entries.length, 1100);
  assert.equal(entries.filter((e) => e.input === "").length, 775);
  const { train, test, val } = splitInstructionData(entries);
  assert.deepEqual([train.length, test.length, val.length], [935, 110, 55]);
  assert.equal(train[0], entries[0]);
  assert.equal(test[0], entries[935]);
  assert.equal(val[0], entries[1045]);
  assert.equal(val.at(-1), entries[1099]);
  // The workshop's 85/15 split has no validation part.
  const workshop = splitInstructionData(entries, { train: 0.85, test: 0.15 });
  assert.deepEqual([workshop.train.length, workshop.test.length, workshop.val.length], [
    935,
    165,
    0,
  ]);
});

Deno.test("the Alpaca template, with and without input, and the answer after '### Response:'", () => {
  const preamble = "Below is an instruction that describes a task. Write a response that " +
    "appropriately completes the request.";
  assert.equal(
    formatInstructionPrompt({ instruction: "Convert 45 kilometers to meters.", input: "" }),
    `${preamble}\n\n### Instruction:\nConvert 45 kilometers to meters.`,
  );
  const entry = {
    instruction: "Edit the following sentence for grammar.",
    input: "He go to the park every day.",
    output: "He goes to the park every day.",
  };
  assert.equal(
    formatInstructionExample(entry),
    `${preamble}\n\n### Instruction:\nEdit the following sentence for grammar.` +
      "\n\n### Input:\nHe go to the park every day." +
      "\n\n### Response:\nHe goes to the park every day.",
  );
  assert.equal(
    extractResponse("\n\n### Response:\nHe goes to the park.\n"),
    "He goes to the park.",
  );
  assert.equal(extractResponse(" no header "), "no header");
});

Deno.test("malformed instruction data names the file and the entry, counting from 1; a missing input is an empty one", () => {
  assert.throws(() => parseInstructionData({}, "d.json"), /d\.json: expected a JSON array/);
  assert.throws(
    () =>
      parseInstructionData([{ instruction: "a", input: "", output: "b" }, {
        instruction: "c",
        input: "",
      }], "d.json"),
    /d\.json: entry 2 \(counting from 1\) has no "output" \(expected a string\)/,
  );
  assert.throws(
    () => parseInstructionData([{ instruction: 3, input: "", output: "" }], "d.json"),
    /entry 1 \(counting from 1\) has a non-string "instruction"/,
  );
  assert.throws(
    () => parseInstructionData([{ instruction: "a", input: 4, output: "" }], "d.json"),
    /entry 1 \(counting from 1\) has a non-string "input"/,
  );
  // As the judge's responses files and LitGPT's JSON data: no input key, no input.
  assert.deepEqual(parseInstructionData([{ instruction: "c", output: "d" }], "d.json"), [
    { instruction: "c", input: "", output: "d" },
  ]);
});

Deno.test("JSONL instruction data: records read line by line; a bad record names the file, the record and the field", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.jsonl`;
    const good = { instruction: "Say hi.", input: "", output: "Hi." };
    await Deno.writeTextFile(path, `${JSON.stringify(good)}\n\n${JSON.stringify(good)}\n`);
    const entries = await readInstructionData(path);
    assert.deepEqual(entries, [good, good]);
    assert.deepEqual(findDuplicates(entries), {
      count: 1,
      examples: [{ index: 1, firstIndex: 0 }],
      repeatedPrompts: 1,
    });

    await Deno.writeTextFile(
      path,
      `${JSON.stringify(good)}\n${JSON.stringify({ instruction: "x", input: "", output: 5 })}\n`,
    );
    await assert.rejects(
      readInstructionData(path),
      new RegExp(`${path.replaceAll("/", "\\/")}: line 2 has a non-string "output"`),
    );
    await Deno.writeTextFile(path, `${JSON.stringify(good)}\n\n{"instruction": \n`);
    await assert.rejects(
      readInstructionData(path),
      /data\.jsonl: line 3 is not valid JSON/,
    );
  });
});

Deno.test("duplicates in the real data: no exact repeats, 25 entries repeating an earlier instruction + input", async () => {
  const report = findDuplicates(await readInstructionData(DATA));
  assert.deepEqual(report, { count: 0, examples: [], repeatedPrompts: 25 });
});

Deno.test("templates: alpaca is the book's format_input + response, phi3 the exercise 7.1 strings, custom strings with an optional input part", () => {
  const withInput = { instruction: "Fix it.", input: "He go.", output: "He goes." };
  const without = { instruction: "Name a color.", input: "", output: "Red." };
  const alpaca = promptTemplate("alpaca");
  for (const entry of [withInput, without]) {
    assert.equal(alpaca.prompt(entry), formatInstructionPrompt(entry));
    assert.equal(alpaca.query(entry), `${formatInstructionPrompt(entry)}\n\n### Response:\n`);
    assert.equal(alpaca.example(entry), formatInstructionExample(entry));
  }
  assert.equal(alpaca.extractResponse("\n\n### Response:\nHe goes.\n"), "He goes.");

  const phi3 = promptTemplate("phi3");
  assert.equal(phi3.prompt(withInput), "<|user|>\nFix it.\nHe go.");
  assert.equal(phi3.example(withInput), "<|user|>\nFix it.\nHe go.\n<|assistant|>:\nHe goes.");
  assert.equal(phi3.example(without), "<|user|>\nName a color.\n<|assistant|>:\nRed.");
  assert.equal(phi3.extractResponse("\n<|assistant|>:\nRed.\n"), "Red.");

  const custom = promptTemplate("Q: {instruction}[[ ({input})]]\nA: {output}");
  assert.equal(custom.name, "custom");
  assert.equal(custom.prompt(withInput), "Q: Fix it. (He go.)");
  assert.equal(custom.example(without), "Q: Name a color.\nA: Red.");
  assert.equal(custom.extractResponse("\nA: Red."), "Red.");
  const plain = parsePromptTemplate("{instruction} {input} => {output}");
  assert.equal(plain.prompt(withInput), "Fix it. He go.");
  assert.equal(plain.example(withInput), "Fix it. He go. => He goes.");

  assert.throws(() => promptTemplate("Q: {instruction}"), /must end with \{output\}/);
  assert.throws(() => promptTemplate("{question} {output}"), /unknown field \{question\}/);
  assert.throws(() => promptTemplate("{input} {output}"), /has no \{instruction\}/);
  assert.throws(() => promptTemplate("{instruction}[[ x]] {output}"), /must contain \{input\}/);
  assert.throws(() => promptTemplate("{instruction}[[ {input} {output}"), /unmatched/);
});

Deno.test("tokenized training split: mean 56.4 and max 91 tokens (GPT-2 BPE, Alpaca), none truncated at 1024", async () => {
  const { train } = splitInstructionData(await readInstructionData(DATA));
  const tokenizer = new Gpt2Tokenizer();
  const { examples, stats } = tokenizeInstructions(train, promptTemplate("alpaca"), tokenizer);
  assert.equal(stats.count, 935);
  assert.equal(Math.round(stats.meanLength * 10) / 10, 56.4);
  assert.equal(stats.maxLength, 91);
  assert.equal(stats.truncated, 0);
  assert.deepEqual(examples[0].ids, tokenizer.encode(formatInstructionExample(train[0])));
  assert.equal(
    examples[0].promptLength,
    tokenizer.encode(formatInstructionPrompt(train[0])).length,
  );
  const tight = tokenizeInstructions(train, promptTemplate("alpaca"), tokenizer, {
    allowedMaxLength: 80,
  });
  assert.equal(tight.stats.truncated, examples.filter((e) => e.ids.length > 80).length);
  assert.ok(tight.stats.truncated > 0);
});

Deno.test("tokenizeSplits: every split tokenized with its own stats (phi3 template)", async () => {
  const splits = splitInstructionData(await readInstructionData(DATA));
  const tokenizer = new Gpt2Tokenizer();
  const phi3 = promptTemplate("phi3");
  const all = tokenizeSplits(splits, phi3, tokenizer);
  assert.deepEqual([all.train.stats.count, all.test.stats.count, all.val.stats.count], [
    935,
    110,
    55,
  ]);
  assert.deepEqual(all.val.examples[0].ids, tokenizer.encode(phi3.example(splits.val[0])));
  // The Phi-3 layout is shorter than Alpaca's preamble.
  const alpaca = tokenizeSplits(splits, promptTemplate("alpaca"), tokenizer);
  assert.ok(all.train.stats.meanLength < alpaca.train.stats.meanLength - 15);
});
