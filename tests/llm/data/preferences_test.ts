import assert from "node:assert/strict";
import { join } from "node:path";
import { DATASETS } from "../../../datasets/catalog.ts";
import { promptTemplate, splitInstructionData } from "../../../llm/data/instructions.ts";
import {
  collatePreferences,
  parsePreferenceData,
  PreferenceLoader,
  readPreferenceData,
  tokenizePreferences,
} from "../../../llm/data/preferences.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";

const FILE = sharedFixture("workshop", "instruction-data-with-preference.json");

const row = <T extends ArrayLike<number>>(a: T, r: number, n: number) =>
  Array.from(a).slice(r * n, (r + 1) * n);

Deno.test("preference data: the catalog's checksum and size are the fixture's", async () => {
  const bytes = await Deno.readFile(FILE);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const entry = DATASETS["instruction-data-with-preference"];
  assert.equal(hex, entry.sha256);
  assert.equal(bytes.length, entry.size);
});

Deno.test("preference data: 1,100 entries split 935 / 55 / 110 as chapter 7", async () => {
  const entries = await readPreferenceData(FILE);
  assert.equal(entries.length, 1100);
  const splits = splitInstructionData(entries);
  assert.deepEqual(
    [splits.train.length, splits.val.length, splits.test.length],
    [935, 55, 110],
  );
  // The book's data[50]: an impolite and a polite rewrite.
  assert.equal(entries[50].chosen, "The correct spelling is 'Occasion.'");
  assert.equal(entries[50].rejected, "The correct spelling is obviously 'Occasion.'");
  // 935 pairs make 116 full batches of 8 (drop_last), as the book's train_loader.
  const pairs = tokenizePreferences(splits.train, promptTemplate("alpaca"), new Gpt2Tokenizer());
  assert.equal(new PreferenceLoader(pairs, { shuffle: true, dropLast: true }).numBatches, 116);
});

Deno.test("preference data: a missing or empty field is named with the file, entry and field", async () => {
  const good = { instruction: "Say hi", input: "", chosen: "Hi.", rejected: "Ugh, hi." };
  assert.throws(
    () => parsePreferenceData([good, { ...good, chosen: undefined }], "p.json"),
    /^Error: p\.json: entry 2 has no "chosen"/,
  );
  assert.throws(
    () => parsePreferenceData([{ ...good, rejected: "  " }], "p.json"),
    /p\.json: entry 1: "rejected" is empty/,
  );
  assert.throws(
    () => parsePreferenceData([good, good, { ...good, instruction: 3 }], "p.json"),
    /p\.json: entry 3: "instruction" is not a string/,
  );
  assert.throws(() => parsePreferenceData({}, "p.json"), /p\.json: expected a JSON array/);
  await withTempDir(async (dir) => {
    const path = join(dir, "pairs.jsonl");
    await Deno.writeTextFile(path, JSON.stringify(good) + "\n\n{oops\n");
    await assert.rejects(
      readPreferenceData(path),
      /pairs\.jsonl: record 2 \(line 3\) is not valid JSON/,
    );
    await Deno.writeTextFile(
      path,
      JSON.stringify(good) + "\n" + JSON.stringify({ ...good, input: undefined }),
    );
    const read = await readPreferenceData(path);
    assert.equal(read.length, 2);
    assert.equal(read[1].input, "");
  });
});

Deno.test("preference collate: the book's example batch of data[:2] (ids, padding, masks)", async () => {
  const entries = await readPreferenceData(FILE);
  const pairs = tokenizePreferences(
    entries.slice(0, 2),
    promptTemplate("alpaca"),
    new Gpt2Tokenizer(),
  );
  const batch = collatePreferences(pairs, { allowedMaxLength: 1024 });
  // The notebook's printed batch["chosen"] (dpo-from-scratch.ipynb): 2 rows of 81.
  assert.equal(batch.seqLen, 81);
  const prompt0 = [
    21106,
    318,
    281,
    12064,
    326,
    8477,
    257,
    4876,
    13,
    19430,
    257,
    2882,
    326,
    20431,
    32543,
    262,
    2581,
    13,
    198,
    198,
    21017,
    46486,
    25,
    198,
    36,
    2100,
    4985,
    262,
    1708,
    9546,
    416,
    25449,
    340,
    656,
    262,
    24993,
    1813,
    13,
    198,
    198,
    21017,
    23412,
    25,
    198,
    19503,
    521,
    14610,
    1545,
  ];
  const chosen0 = [
    ...prompt0,
    198,
    198,
    21017,
    18261,
    25,
    198,
    464,
    24993,
    286,
    262,
    1813,
    9546,
    366,
    19503,
    521,
    1,
    318,
    11491,
    11,
    262,
    3376,
    24993,
    318,
    366,
    6726,
    1911,
  ];
  assert.equal(pairs[0].chosen.promptLength, prompt0.length);
  assert.deepEqual(row(batch.chosen, 0, 81), [...chosen0, ...Array(81 - 74).fill(50256)]);
  const chosen1Tail = [198, 1544, 2925, 284, 262, 3952, 790, 1110, 13];
  assert.deepEqual(row(batch.chosen, 1, 81).slice(50, 59), chosen1Tail);
  assert.deepEqual(row(batch.chosen, 1, 81).slice(59), Array(22).fill(50256));
  // The notebook's chosen_mask[0]: 50 False, 24 True, 7 False.
  assert.deepEqual(
    row(batch.chosenMask, 0, 81),
    [...Array(50).fill(0), ...Array(24).fill(1), ...Array(7).fill(0)],
  );
  // The rejected side: padded to the same length, masked from prompt + 2 to its own end.
  const rejected0 = pairs[0].rejected.ids;
  assert.deepEqual(row(batch.rejected, 0, 81).slice(0, rejected0.length), rejected0);
  const mask = row(batch.rejectedMask, 0, 81);
  assert.equal(mask.indexOf(1), prompt0.length + 2);
  assert.equal(mask.lastIndexOf(1), rejected0.length - 1);
  // allowed_max_length cuts ids and masks alike; no prompt masking keeps the prompt.
  const cut = collatePreferences(pairs, { allowedMaxLength: 60, maskPromptTokens: false });
  assert.equal(cut.seqLen, 60);
  assert.deepEqual(row(cut.chosenMask, 0, 60), Array(60).fill(1));
});

Deno.test("preference loader: seeded shuffle per epoch, drop_last, resume from a batch index", () => {
  const pairs = Array.from({ length: 10 }, (_, i) => ({
    chosen: { ids: [i, i + 1, i + 2], promptLength: 1 },
    rejected: { ids: [i, i + 5], promptLength: 1 },
  }));
  const loader = new PreferenceLoader(pairs, { batchSize: 4, shuffle: true, dropLast: true });
  assert.equal(loader.numBatches, 2);
  const all = [...loader.batches(1)];
  assert.equal(all.length, 2);
  assert.deepEqual([...loader.batches(1, 1)], all.slice(1));
  assert.notDeepEqual(loader.order(0), loader.order(1));
  const firsts = new Set([...loader.order(0)]);
  assert.equal(firsts.size, 10);
  const plain = new PreferenceLoader(pairs, { batchSize: 4 });
  assert.equal(plain.numBatches, 3);
  assert.equal([...plain.batches()][2].batchSize, 2);
});

Deno.test("preference data: the phi3 template puts each response after its chat prompt", () => {
  const tokenizer = new Gpt2Tokenizer();
  const entry = { instruction: "Say hi", input: "politely", chosen: "Hello!", rejected: "What." };
  const [pair] = tokenizePreferences([entry], promptTemplate("phi3"), tokenizer);
  assert.equal(
    tokenizer.decode(pair.chosen.ids),
    "<|user|>\nSay hi\npolitely\n<|assistant|>:\nHello!",
  );
  assert.equal(tokenizer.decode(pair.rejected.ids).endsWith("<|assistant|>:\nWhat."), true);
  assert.equal(pair.chosen.promptLength, tokenizer.encode("<|user|>\nSay hi\npolitely").length);
  assert.equal(pair.rejected.promptLength, pair.chosen.promptLength);
});
