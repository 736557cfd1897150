import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { withTempDir } from "../fixtures.ts";
import { CHAIN, countingRegistry, quietOutput, writePipeline } from "./helpers.ts";

async function run(
  file: string,
  cacheDir: string,
  extra: Record<string, unknown> = {},
  sets: string[] = [],
) {
  const { registry, runs } = countingRegistry();
  const pipeline = await loadPipeline(file, registry, { sets });
  const report = await runPipeline(pipeline, { cacheDir, out: quietOutput, ...extra });
  return {
    report,
    runs,
    outcomes: Object.fromEntries(report.steps.map((s) => [s.stage, s.outcome])),
  };
}

Deno.test("a second run of an unchanged pipeline is all cached", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    const first = await run(file, cache);
    assert.deepEqual(first.runs, ["a", "b", "c"]);
    assert.deepEqual(first.report.steps.map((s) => s.metrics.value), [3, 6, 6]);
    const second = await run(file, cache);
    assert.deepEqual(second.runs, []);
    assert.deepEqual(second.outcomes, { a: "cached", b: "cached", c: "cached" });
    const manifest = JSON.parse(
      await Deno.readTextFile(join(second.report.artifacts.b.dir, "manifest.json")),
    );
    assert.equal(manifest.stage, "b");
    assert.deepEqual(manifest.inputs, { a: { type: "source", key: first.report.artifacts.a.key } });
    assert.deepEqual(manifest.metrics, { value: 6 });
    assert.ok(manifest.startedAt && manifest.finishedAt && manifest.versions.groundup);
  });
});

Deno.test("a changed parameter re-runs that stage and everything downstream", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    await run(file, cache);
    const changedLeaf = await run(file, cache, {}, ["b.nested.a=2"]);
    assert.deepEqual(changedLeaf.runs, ["b"]);
    const changedRoot = await run(file, cache, {}, ["a.value=4"]);
    assert.deepEqual(changedRoot.runs, ["a", "b", "c"]);
    assert.equal(changedRoot.report.steps[1].metrics.value, 8);
    // Key order in the YAML does not matter; going back to the old value finds the old artifact.
    const back = await run(file, cache, {}, ["a.value=3"]);
    assert.deepEqual(back.runs, []);
  });
});

Deno.test("a changed local file re-runs the stage that reads it", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data.txt");
    await Deno.writeTextFile(data, "one");
    const file = await writePipeline(
      dir,
      `name: f\nstages:\n  a: {uses: source, file: ${data}}\n  b: {uses: double, needs: a}\n`,
    );
    const cache = join(dir, "cache");
    assert.deepEqual((await run(file, cache)).runs, ["a", "b"]);
    assert.deepEqual((await run(file, cache)).runs, []);
    await Deno.writeTextFile(data, "two");
    assert.deepEqual((await run(file, cache)).runs, ["a", "b"]);
  });
});

Deno.test("--plan runs nothing; --from, --until and --force select stages", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    const plan = await run(file, cache, { planOnly: true });
    assert.deepEqual(plan.runs, []);
    assert.deepEqual(plan.outcomes, { a: "planned", b: "planned", c: "planned" });
    const until = await run(file, cache, { until: "b" });
    assert.deepEqual(until.runs, ["a", "b"]);
    assert.equal(until.outcomes.c, "skipped");
    const planAfter = await run(file, cache, { planOnly: true });
    assert.deepEqual(planAfter.outcomes, { a: "cached", b: "cached", c: "planned" });
    assert.deepEqual((await run(file, cache)).runs, ["c"]);
    assert.deepEqual((await run(file, cache, { force: ["b"] })).runs, ["b"]);
    assert.deepEqual((await run(file, cache, { from: "a" })).runs, ["a", "b", "c"]);
    assert.deepEqual((await run(file, cache, { force: "all" })).runs, ["a", "b", "c"]);
    await assert.rejects(
      run(file, cache, { from: "bb" }),
      /--from bb: no stage named "bb" \(did you mean "b"\?\)/,
    );
  });
});

Deno.test("--plan keeps the why column short: a damaged artifact's problem is a note below the table", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    const first = await run(file, cache);
    await Deno.writeTextFile(join(first.report.artifacts.b.dir, "value.txt"), "a longer value");
    let printed = "";
    await run(file, cache, {
      planOnly: true,
      out: { write: (text: string) => void (printed += text), isTerminal: false },
    });
    const [table, notes] = printed.trimEnd().split("\n\n");
    const rows = table.split("\n");
    const width = Math.max(...rows.map((r) => r.length));
    assert.ok(width < 100, `a table ${width} characters wide:\n${table}`);
    assert.match(rows.find((r) => r.startsWith("b "))!, / run +cached artifact unusable \[1\] /);
    assert.match(
      notes,
      /^\[1\] b: cached artifact unusable: .*value\.txt has 14 bytes, the manifest says 1$/,
    );
  });
});

Deno.test("a failing stage leaves no artifact, keeps its checkpoints, and skips downstream", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      CHAIN.replace("    needs: a\n", "    needs: a\n    crash: true\n"),
    );
    const cache = join(dir, "cache");
    const { report, outcomes } = await run(file, cache);
    assert.equal(report.ok, false);
    assert.match(report.error!.message, /stage "b" failed: boom/);
    assert.equal(outcomes.b, "failed");
    const bDir = join(cache, "b");
    const entries = [...Deno.readDirSync(bDir)].map((e) => e.name);
    assert.equal(entries.filter((n) => !n.startsWith(".")).length, 0, "no finished artifact");
    assert.equal(
      entries.filter((n) => n.startsWith(".tmp-")).length,
      0,
      "temporary folder removed",
    );
    const progress = entries.find((n) => n.startsWith(".progress-"))!;
    assert.equal(await Deno.readTextFile(join(bDir, progress, "checkpoint.txt")), "step 1");
  });
});

Deno.test("a process killed mid-stage leaves nothing that looks finished; the next run completes", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const script = new URL("./slow_stage_script.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, cache, "hang"],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    // Wait until the stage has written its checkpoint, then kill the process outright.
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /checkpointed/);
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const names = [...Deno.readDirSync(join(cache, "slow"))].map((e) => e.name);
    assert.ok(
      names.some((n) => n.startsWith(".tmp-")),
      "the half-written folder is still a temp folder",
    );
    assert.ok(!names.some((n) => !n.startsWith(".")), "no finished artifact");

    const rerun = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, cache, "finish"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const output = new TextDecoder().decode(rerun.stdout);
    assert.match(output, /resumed from step 1/);
    const after = [...Deno.readDirSync(join(cache, "slow"))].map((e) => e.name);
    assert.equal(
      after.filter((n) => n.startsWith(".")).length,
      0,
      "temp and progress folders cleaned up",
    );
    assert.equal(after.length, 1);
  });
});
