/**
 * Prints the token ids tools/torch_lora_reference.py collates with the book's custom_collate_fn:
 * the first batches of the real instruction-data.json training split (book split, Alpaca
 * template, GPT-2 BPE), unshuffled, with each example's prompt length. Python has no tiktoken
 * here, so the tokenization is ours; the test re-tokenizes and compares the collated batches.
 *
 *   deno run -A tools/instruction_ids.ts [--batches 2] > /tmp/instruction_ids.json
 */
import {
  promptTemplate,
  readInstructionData,
  splitInstructionData,
  tokenizeInstructions,
} from "../llm/data/instructions.ts";
import { Gpt2Tokenizer } from "../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../tests/fixtures.ts";

const batchesArg = Deno.args.indexOf("--batches");
const numBatches = batchesArg >= 0 ? Number(Deno.args[batchesArg + 1]) : 2;
const BATCH_SIZE = 8;
const path = sharedFixture("workshop", "instruction-data.json");
const { train } = splitInstructionData(await readInstructionData(path));
const { examples } = tokenizeInstructions(
  train.slice(0, numBatches * BATCH_SIZE),
  promptTemplate("alpaca"),
  new Gpt2Tokenizer(),
);
const batches = Array.from(
  { length: numBatches },
  (_, b) => examples.slice(b * BATCH_SIZE, (b + 1) * BATCH_SIZE),
);
console.log(JSON.stringify({
  source: "instruction-data.json, train split, entries 0.. in order, alpaca template",
  batch_size: BATCH_SIZE,
  batches,
}));
