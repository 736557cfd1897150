import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { openDataloaderArtifact } from "../../stages/dataloader.ts";
import { builtinStages } from "../../stages/mod.ts";
import { openTokenizeArtifact } from "../../stages/tokenize.ts";
import { readTokenFile } from "../../llm/data/token_file.ts";
import { SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

async function runYaml(dir: string, yaml: string, sets: string[] = []) {
  const file = await writePipeline(dir, yaml);
  const pipeline = await loadPipeline(file, builtinStages(), { sets });
  return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
}

const WORKSHOP = `name: t
seed: 123
stages:
  tokenize:
    corpus: the-verdict
    tokenizer: gpt2
  dataloader:
    needs: tokenize
    train_ratio: 0.9
    batch_size: 2
    max_length: 256
    stride: 256
`;

Deno.test("workshop settings: 5,145 tokens; 4,608 train and 512 validation tokens", async () => {
  await withTempDir(async (dir) => {
    const report = await runYaml(dir, WORKSHOP);
    assert.ok(report.ok, report.error?.message);
    const tok = report.artifacts.tokenize;
    assert.equal(tok.manifest.metrics.characters, 20479);
    assert.equal(tok.manifest.metrics.tokens, 5145);
    assert.equal((await readTokenFile(join(tok.dir, "tokens.bin"))).length, 5145);
    const data = report.artifacts.dataloader;
    assert.equal(data.manifest.metrics.train_tokens, 4608);
    assert.equal(data.manifest.metrics.val_tokens, 512);
    assert.equal(data.manifest.metrics.train_batches, 9);
    assert.equal(data.manifest.metrics.val_batches, 1);
    // Downstream reads exactly these batches: each train window appears once per epoch.
    const loaders = await openDataloaderArtifact(data.dir);
    const epoch0 = [...loaders.train.batches(0)];
    assert.equal(epoch0.length, 9);
    assert.equal(epoch0.reduce((n, b) => n + b.inputs.length, 0), 4608);
    const [val] = [...loaders.val.batches(0)];
    assert.equal(val.targets[0], val.inputs[1]);
  });
});

Deno.test("the book's first-window check through the stage (batch 1, max_length 4, stride 1)", async () => {
  await withTempDir(async (dir) => {
    const report = await runYaml(dir, WORKSHOP, [
      "dataloader.batch_size=1",
      "dataloader.max_length=4",
      "dataloader.stride=1",
      "dataloader.shuffle=false",
    ]);
    const loaders = await openDataloaderArtifact(report.artifacts.dataloader.dir);
    const first = loaders.train.batch(0, 0);
    assert.deepEqual([...first.inputs], [40, 367, 2885, 1464]);
    assert.deepEqual([...first.targets], [367, 2885, 1464, 1807]);
  });
});

Deno.test("the simple tokenizer through the stage: 4,690 tokens, vocabulary 1,132", async () => {
  await withTempDir(async (dir) => {
    const report = await runYaml(dir, WORKSHOP, [
      "tokenize.tokenizer=simple",
      "dataloader.max_length=64",
      "dataloader.stride=64",
    ]);
    const metrics = report.artifacts.tokenize.manifest.metrics;
    assert.equal(metrics.tokens, 4690);
    assert.equal(metrics.unique_tokens, 1130);
    assert.equal(metrics.vocab_size, 1132);
    const { tokenizer } = await openTokenizeArtifact(report.artifacts.tokenize.dir);
    assert.equal(tokenizer.vocabSize, 1132);
    assert.equal(
      tokenizer.decode(tokenizer.encode("I HAD always thought")),
      "I HAD always thought",
    );
  });
});

Deno.test("a local corpus file; empty and non-UTF-8 files are clear errors", async () => {
  await withTempDir(async (dir) => {
    const corpus = join(dir, "story.txt");
    const text = "one two three four five six seven eight nine ten. ".repeat(20);
    await Deno.writeTextFile(corpus, text);
    const yaml = (path: string) => `name: l\nstages:\n  tokenize:\n    corpus: ${path}\n`;
    const ok = await runYaml(dir, yaml(corpus));
    assert.ok(ok.ok);
    assert.equal(ok.artifacts.tokenize.manifest.metrics.characters, text.length);

    const empty = join(dir, "empty.txt");
    await Deno.writeTextFile(empty, "");
    const e = await runYaml(dir, yaml(empty));
    assert.match(e.error!.message, /empty\.txt: the corpus is empty/);

    const bad = join(dir, "bad.txt");
    await Deno.writeFile(bad, Uint8Array.from([0x68, 0x69, 0x0a, 0xfe, 0x41]));
    const b = await runYaml(dir, yaml(bad));
    assert.match(b.error!.message, /bad\.txt: not valid UTF-8: invalid byte 0xfe at byte offset 3/);
  });
});

Deno.test("settings that leave a split with no window are an error, not an empty artifact", async () => {
  await withTempDir(async (dir) => {
    const report = await runYaml(dir, WORKSHOP, ["dataloader.train_ratio=0.99"]);
    assert.equal(report.ok, false);
    assert.match(
      report.error!.message,
      /the val split has \d+ tokens .* a window needs max_length \+ 1 = 257/,
    );
    const entries = [...Deno.readDirSync(join(dir, "cache", "dataloader"))].map((e) => e.name);
    assert.ok(!entries.some((n) => !n.startsWith(".")));
  });
});
