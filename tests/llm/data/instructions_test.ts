import assert from "node:assert/strict";
import {
  extractResponse,
  formatInstructionExample,
  formatInstructionPrompt,
  parseInstructionData,
  readInstructionData,
  splitInstructionData,
} from "../../../llm/data/instructions.ts";
import { sharedFixture } from "../../fixtures.ts";

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

Deno.test("malformed instruction data names the file and the entry", () => {
  assert.throws(() => parseInstructionData({}, "d.json"), /d\.json: expected a JSON array/);
  assert.throws(
    () =>
      parseInstructionData([{ instruction: "a", input: "", output: "b" }, {
        instruction: "c",
        output: "d",
      }], "d.json"),
    /d\.json: entry 1 has no "input" \(expected a string\)/,
  );
  assert.throws(
    () => parseInstructionData([{ instruction: 3, input: "", output: "" }], "d.json"),
    /entry 0 has a non-string "instruction"/,
  );
});
