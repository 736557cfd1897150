import { chatEndTokenId, chatFormatFor, chatPromptTemplate } from "../../../llm/chat/mod.ts";
import { lenmlDir, lenmlTokenizer } from "../tokenizer/hf_files.ts";
import assert from "node:assert/strict";
import type { Batch } from "../../../llm/data/batch.ts";
import { collateInstructions, InstructionLoader } from "../../../llm/data/instruction_batches.ts";
import {
  promptTemplate,
  readInstructionData,
  splitInstructionData,
  tokenizeInstructions,
} from "../../../llm/data/instructions.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { localFixture, sharedFixture } from "../../fixtures.ts";

const rows = (b: Batch, which: "inputs" | "targets") =>
  Array.from(
    { length: b.batchSize },
    (_, r) => [...b[which].subarray(r * b.seqLen, (r + 1) * b.seqLen)],
  );

Deno.test("collate: the book's example batch (pad to longest + 1, shift, -100 after the first end-of-text)", () => {
  // The book's listing 7.x: inputs_1 = [0..4], inputs_2 = [5, 6], inputs_3 = [7, 8, 9].
  const batch = collateInstructions([
    { ids: [0, 1, 2, 3, 4], promptLength: 2 },
    { ids: [5, 6], promptLength: 1 },
    { ids: [7, 8, 9], promptLength: 2 },
  ]);
  assert.deepEqual(rows(batch, "inputs"), [
    [0, 1, 2, 3, 4],
    [5, 6, 50256, 50256, 50256],
    [7, 8, 9, 50256, 50256],
  ]);
  assert.deepEqual(rows(batch, "targets"), [
    [1, 2, 3, 4, 50256],
    [6, 50256, -100, -100, -100],
    [8, 9, 50256, -100, -100],
  ]);
  // Exercise 7.2: targets[:promptLength - 1] are ignored too.
  const masked = collateInstructions([
    { ids: [0, 1, 2, 3, 4], promptLength: 3 },
    { ids: [5, 6], promptLength: 1 },
  ], { maskInstructions: true });
  assert.deepEqual(rows(masked, "targets"), [[-100, -100, 3, 4, 50256], [
    6,
    50256,
    -100,
    -100,
    -100,
  ]]);
  // allowed_max_length cuts both after the masking.
  const cut = collateInstructions([{ ids: [0, 1, 2, 3, 4], promptLength: 1 }, {
    ids: [5],
    promptLength: 1,
  }], {
    allowedMaxLength: 3,
  });
  assert.deepEqual(rows(cut, "inputs"), [[0, 1, 2], [5, 50256, 50256]]);
  assert.deepEqual(rows(cut, "targets"), [[1, 2, 3], [50256, -100, -100]]);
});

Deno.test("loader: batch 8, drop_last leaves 116 training batches averaging ≈ 71 positions; seeded shuffles per epoch", async () => {
  const { train, val } = splitInstructionData(
    await readInstructionData(sharedFixture("workshop", "instruction-data.json")),
  );
  const tokenizer = new Gpt2Tokenizer();
  const template = promptTemplate("alpaca");
  const examples = tokenizeInstructions(train, template, tokenizer).examples;
  const loader = new InstructionLoader(examples, {
    shuffle: true,
    dropLast: true,
    seed: 123,
    allowedMaxLength: 1024,
  });
  assert.equal(loader.numBatches, 116);
  const epoch0 = [...loader.batches(0)];
  assert.ok(
    epoch0.every((b) => b.batchSize === 8 && b.targets.length === b.inputs.length),
  );
  const meanLength = epoch0.reduce((n, b) => n + b.seqLen, 0) / epoch0.length;
  assert.ok(meanLength > 66 && meanLength < 76, `mean padded length ${meanLength}`);
  // The same seed and epoch give the same order, another epoch another one; every example once.
  assert.deepEqual(
    loader.order(0),
    new InstructionLoader(examples, { shuffle: true, seed: 123 }).order(0),
  );
  assert.notDeepEqual(loader.order(0), loader.order(1));
  assert.deepEqual([...loader.order(1)].sort((a, b) => a - b), examples.map((_, i) => i));
  // A batch is exactly the collate of the examples its order picks.
  const order = loader.order(0);
  assert.deepEqual(
    loader.batch(0, 3),
    collateInstructions([...order.subarray(24, 32)].map((i) => examples[i]), {
      allowedMaxLength: 1024,
    }),
  );

  const valLoader = new InstructionLoader(tokenizeInstructions(val, template, tokenizer).examples);
  assert.equal(valLoader.numBatches, 7); // 55 entries, the last batch has 7
  assert.equal([...valLoader.batches()].at(-1)!.batchSize, 7);
  assert.throws(
    () => new InstructionLoader(examples, { batchSize: 0 }),
    /batchSize must be an integer ≥ 1/,
  );
});

Deno.test("collate parity: the book's custom_collate_fn (PyTorch) over the first training batches of the real data, with and without mask_instructions", async () => {
  // tests/fixtures/parity/collate.json, from tools/torch_lora_reference.py (see its docstring).
  const fixture = JSON.parse(await Deno.readTextFile(localFixture("parity", "collate.json")));
  const { train } = splitInstructionData(
    await readInstructionData(sharedFixture("workshop", "instruction-data.json")),
  );
  const examples = tokenizeInstructions(train, promptTemplate("alpaca"), new Gpt2Tokenizer())
    .examples;
  const plain = new InstructionLoader(examples, { allowedMaxLength: 1024 });
  const masked = new InstructionLoader(examples, {
    allowedMaxLength: 1024,
    maskInstructions: true,
  });
  assert.ok(fixture.batches.length >= 2);
  fixture.batches.forEach((want: Record<string, number[][]>, i: number) => {
    const batch = plain.batch(0, i);
    assert.deepEqual(rows(batch, "inputs"), want.input_ids, `batch ${i} inputs`);
    assert.deepEqual(rows(batch, "targets"), want.target_ids, `batch ${i} targets`);
    assert.deepEqual(
      rows(masked.batch(0, i), "targets"),
      want.masked_target_ids,
      `batch ${i} masked`,
    );
    assert.deepEqual(rows(masked.batch(0, i), "inputs"), want.input_ids);
  });
});

Deno.test("collate: a chat template's examples with Qwen3's end of turn and pad, prompts masked", async () => {
  const tokenizer = await lenmlTokenizer("qwen3");
  const chat = await chatFormatFor(lenmlDir("qwen3"), tokenizer);
  const template = chatPromptTemplate(chat);
  const entries = [
    { instruction: "Name the capital of France.", input: "", output: "Paris." },
    { instruction: "Add the numbers.", input: "2 and 3", output: "The sum is 5." },
  ];
  const { examples } = tokenizeInstructions(entries, template, tokenizer);
  for (const [i, example] of examples.entries()) {
    // The prompt's ids are exactly the start of the example's, so masking hides the prompt.
    const promptIds = tokenizer.encode(template.prompt(entries[i]));
    assert.deepEqual(example.ids.slice(0, promptIds.length), promptIds);
    assert.equal(example.promptLength, promptIds.length);
    assert.equal(tokenizer.decode(example.ids.slice(promptIds.length)), entries[i].output);
  }
  assert.equal(
    template.prompt(entries[1]),
    "<|im_start|>user\nAdd the numbers.\n\n2 and 3<|im_end|>\n<|im_start|>assistant\n" +
      "<think>\n\n</think>\n\n",
  );
  const end = chatEndTokenId(chat, tokenizer.specialTokens)!;
  const pad = tokenizer.tokenId("<|endoftext|>")!;
  assert.deepEqual([end, pad], [151645, 151643]);
  const batch = collateInstructions(examples, {
    padTokenId: pad,
    endTokenId: end,
    maskInstructions: true,
  });
  const cols = Math.max(...examples.map((e) => e.ids.length));
  assert.equal(batch.seqLen, cols);
  for (const [r, example] of examples.entries()) {
    const row = (a: Int32Array) => Array.from(a.subarray(r * cols, (r + 1) * cols));
    const n = example.ids.length, p = example.promptLength;
    const inputs = row(batch.inputs), targets = row(batch.targets);
    // Inputs: the example, the end of turn, then padding.
    assert.deepEqual(inputs, [...example.ids, end, ...Array(cols).fill(pad)].slice(0, cols));
    // Targets: the prompt hidden, the answer and the end of turn learned, the padding ignored.
    assert.deepEqual(
      targets,
      [
        ...Array(p - 1).fill(-100),
        ...example.ids.slice(p),
        end,
        ...Array(cols).fill(-100),
      ].slice(0, cols),
    );
    assert.equal(targets.filter((t) => t !== -100).length, n - p + 1);
  }
});
