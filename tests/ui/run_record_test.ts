/** The runner's run record: written at the start, updated per stage and with live progress. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { CHAIN, countingRegistry, quietOutput, writePipeline } from "../runner/helpers.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { RUNS_DIR } from "../../runner/run_record.ts";
import { Gate, runUiPipeline } from "./ui_cache.ts";

async function records(cacheDir: string) {
  const dir = join(cacheDir, RUNS_DIR);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".json"))
    .sort();
  return await Promise.all(
    names.map(async (n) => ({ name: n, ...JSON.parse(await Deno.readTextFile(join(dir, n))) })),
  );
}

Deno.test("a run record lists every stage with its outcome, key, needs and metrics", async () => {
  await withTempDir(async (dir) => {
    const { registry } = countingRegistry();
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    const run = async () =>
      await runPipeline(await loadPipeline(file, registry), { cacheDir: cache, out: quietOutput });
    const first = await run();
    await new Promise((r) => setTimeout(r, 5)); // distinct start times
    await run();
    const [a, b] = await records(cache);
    assert.match(a.name, /^\d{4}-\d\d-\d\dT[\d-]+Z-chain\.json$/);
    assert.equal(a.pipeline, "chain");
    assert.equal(a.file, file);
    assert.equal(a.status, "ok");
    assert.ok(Date.parse(a.finishedAt) >= Date.parse(a.startedAt));
    assert.deepEqual(a.steps.map((s: { stage: string }) => s.stage), ["a", "b", "c"]);
    assert.deepEqual(a.steps.map((s: { outcome: string }) => s.outcome), ["ran", "ran", "ran"]);
    assert.deepEqual(a.steps.map((s: { needs: string[] }) => s.needs), [[], ["a"], ["a"]]);
    assert.equal(a.steps[1].key, first.steps[1].key);
    assert.deepEqual(a.steps[1].metrics, { value: 6 });
    assert.deepEqual(b.steps.map((s: { outcome: string }) => s.outcome), [
      "cached",
      "cached",
      "cached",
    ]);
  });
});

Deno.test("a failing stage marks the record failed and downstream skipped", async () => {
  await withTempDir(async (dir) => {
    const { registry } = countingRegistry();
    const file = await writePipeline(
      dir,
      CHAIN.replace("    needs: a\n", "    needs: a\n    crash: true\n"),
    );
    const cache = join(dir, "cache");
    const report = await runPipeline(await loadPipeline(file, registry), {
      cacheDir: cache,
      out: quietOutput,
    });
    assert.equal(report.ok, false);
    const [record] = await records(cache);
    assert.equal(record.status, "failed");
    assert.equal(record.steps[1].outcome, "failed");
    assert.match(record.steps[1].error, /boom/);
  });
});

Deno.test("while a stage runs, the record says running and holds its progress", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const gate = new Gate();
    const done = runUiPipeline(dir, cache, { gate, name: "waiting" });
    await gate.running;
    // The first progress write is immediate; give the serialised writer a moment.
    let record;
    for (let i = 0; i < 500; i++) { // up to ~10 s on a loaded machine
      [record] = await records(cache);
      if (record.steps[0].progress) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(record.status, "running");
    assert.equal(record.steps[0].outcome, "running");
    assert.equal(record.steps[0].progress.done, 3);
    assert.equal(record.steps[0].progress.total, 10);
    assert.deepEqual(record.steps[0].progress.values, { loss: 4.25 });
    assert.equal(typeof record.steps[0].progress.etaSeconds, "number");
    gate.release();
    await done;
    [record] = await records(cache);
    assert.equal(record.status, "ok");
    assert.equal(record.steps[0].outcome, "ran");
    assert.equal(record.steps[0].progress, undefined);
    assert.deepEqual(record.steps[0].metrics, { loss: 3.5 });
  });
});
