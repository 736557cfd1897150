import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { builtinStages, defineStage, loadPipeline, runPipeline } from "../mod.ts";
import { SHARED_FIXTURES, withTempDir } from "./fixtures.ts";

Deno.test("mod.ts: a user-defined stage runs after the built-in ones and is cached like them", async () => {
  let runs = 0;
  const wordCount = defineStage({
    type: "word-count",
    version: "1",
    description: "count the corpus's words",
    params: z.strictObject({ min_length: z.number().int().min(1).default(1) }),
    requires: ["tokenize"],
    async run(ctx) {
      runs++;
      const text = await Deno.readTextFile(join(ctx.inputs.tokenize.dir, "corpus.txt"));
      const words = text.split(/\s+/).filter((w) => w.length >= ctx.params.min_length).length;
      await Deno.writeTextFile(join(ctx.outDir, "count.txt"), String(words));
      await Deno.writeTextFile(join(ctx.progressDir, "seen"), "yes");
      return { metrics: { words } };
    },
  });
  await withTempDir(async (dir) => {
    const file = join(dir, "p.yaml");
    await Deno.writeTextFile(
      file,
      `name: custom\nmirror: ${SHARED_FIXTURES}\nstages:\n  tokenize: {corpus: the-verdict}\n  word-count:\n    needs: tokenize\n    min_length: 4\n`,
    );
    const registry = builtinStages().register(wordCount);
    const quiet = { write() {}, isTerminal: false };
    const first = await runPipeline(await loadPipeline(file, registry), {
      cacheDir: join(dir, "c"),
      out: quiet,
    });
    assert.ok(first.ok, first.error?.message);
    const words = first.artifacts["word-count"].manifest.metrics.words as number;
    const expected = (await Deno.readTextFile(join(SHARED_FIXTURES, "workshop", "the-verdict.txt")))
      .split(/\s+/).filter((w) => w.length >= 4).length;
    assert.equal(words, expected);
    const second = await runPipeline(await loadPipeline(file, registry), {
      cacheDir: join(dir, "c"),
      out: quiet,
    });
    assert.deepEqual(second.steps.map((s) => s.outcome), ["cached", "cached"]);
    assert.equal(runs, 1);
  });
});
