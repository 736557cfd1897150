/**
 * Faults the runner must survive in one process: damaged cached artifacts (flipped, truncated,
 * missing files; manifests without file lists), a failed stage next to independent ones,
 * --force with checkpoints left, cadence parameters and the cache key, `deno task verify`,
 * unusable cache folders and a full disk.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { verifyCache } from "../../cli/verify.ts";
import { canonicalJson, sha256Hex } from "../../util/hash.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { ArtifactCache } from "../../runner/cache.ts";
import { planPipeline } from "../../runner/plan.ts";
import { pipelineSettings, runPipeline } from "../../runner/run.ts";
import { defineStage } from "../../runner/stage.ts";
import { builtinStages } from "../../stages/mod.ts";
import { REPO_ROOT, withTempDir } from "../fixtures.ts";
import { CHAIN, countingRegistry, writePipeline } from "./helpers.ts";

function capture() {
  const lines: string[] = [];
  return { out: { write: (t: string) => void lines.push(t), isTerminal: false }, lines };
}

async function run(file: string, cacheDir: string, extra: Record<string, unknown> = {}) {
  const { registry, runs } = countingRegistry();
  const pipeline = await loadPipeline(file, registry);
  const { out, lines } = capture();
  const report = await runPipeline(pipeline, { cacheDir, out, ...extra });
  return {
    report,
    runs,
    log: lines.join(""),
    outcomes: Object.fromEntries(report.steps.map((s) => [s.stage, s.outcome])),
  };
}

const damages: [string, (path: string) => Promise<void>, RegExp, boolean][] = [
  // [what, damage to a/value.txt, expected problem, found by sizes alone]
  ["a flipped byte", (p) => Deno.writeTextFile(p, "4"), /value\.txt is corrupt/, false],
  ["a truncated file", (p) => Deno.writeTextFile(p, ""), /value\.txt has 0 bytes/, true],
  ["a missing file", (p) => Deno.remove(p), /value\.txt is missing/, true],
];

for (const [what, damage, expected, bySize] of damages) {
  Deno.test(`a cached artifact with ${what} is found, set aside and re-run before it is read`, async () => {
    await withTempDir(async (dir) => {
      const file = await writePipeline(dir, CHAIN);
      const cache = join(dir, "cache");
      const first = await run(file, cache);
      const aDir = first.report.artifacts.a.dir;
      const manifest = JSON.parse(await Deno.readTextFile(join(aDir, "manifest.json")));
      assert.deepEqual(manifest.outputs["value.txt"], {
        size: 1,
        sha256: sha256Hex("3"),
      });
      await damage(join(aDir, "value.txt"));

      // `verify` names the file.
      const verified = await verifyCache(cache);
      assert.equal(verified.checked, 3);
      assert.equal(verified.bad.length, 1);
      assert.match(verified.bad[0].problem, expected);

      // A size problem is seen by any lookup; a content problem when a stage reads it (b here).
      const again = await run(file, cache, bySize ? {} : { force: ["b"] });
      assert.match(again.log, expected);
      assert.deepEqual(again.runs, bySize ? ["a"] : ["a", "b"]);
      assert.equal(again.report.ok, true);
      assert.equal(await Deno.readTextFile(join(aDir, "value.txt")), "3", "a re-computed");
      assert.equal(again.report.steps[1].metrics.value, 6, "b read the good value");
      const aside = [...Deno.readDirSync(join(cache, "a"))].filter((e) =>
        e.name.includes(".corrupt-")
      );
      assert.equal(aside.length, 1, "the damaged artifact is set aside, not used");
      assert.equal((await verifyCache(cache)).bad.length, 0);
    });
  });
}

Deno.test("an artifact whose manifest has no file list (older groundup) is re-run, saying why", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    const first = await run(file, cache);
    const path = join(first.report.artifacts.c.dir, "manifest.json");
    const manifest = JSON.parse(await Deno.readTextFile(path));
    delete manifest.outputs;
    await Deno.writeTextFile(path, JSON.stringify(manifest));
    const { registry } = countingRegistry();
    const pipeline = await loadPipeline(file, registry);
    const plan = await planPipeline(
      pipeline,
      new ArtifactCache(cache),
      pipelineSettings(pipeline, cache),
    );
    assert.match(plan[2].reason!, /manifest predates file hashes/);
    const again = await run(file, cache);
    assert.deepEqual(again.runs, ["c"]);
    const names = [...Deno.readDirSync(join(cache, "c"))].map((e) => e.name);
    assert.deepEqual(
      names,
      [again.report.artifacts.c.dir.split("/").pop()],
      "replaced, not set aside",
    );
  });
});

Deno.test("a failed stage blocks only what depends on it; the others run; the summary says by what", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      `name: partial
stages:
  a: { uses: source, value: 2 }
  bad: { uses: double, needs: a, crash: true }
  after_bad: { uses: double, needs: [a, bad] }
  independent: { uses: source, value: 5 }
  sibling: { uses: double, needs: a }
`,
    );
    const cache = join(dir, "cache");
    const result = await run(file, cache);
    assert.deepEqual(result.outcomes, {
      a: "ran",
      bad: "failed",
      after_bad: "blocked",
      independent: "ran",
      sibling: "ran",
    });
    assert.equal(result.report.steps[2].blockedBy, "bad");
    assert.equal(result.report.ok, false);
    assert.match(result.report.error!.message, /stage "bad" failed: boom/);
    // Stages that did not write a checkpoint leave no empty progress folder.
    const badFolder = [...Deno.readDirSync(join(cache, "bad"))].map((e) => e.name);
    assert.ok(badFolder.some((n) => n.startsWith(".progress-")), "bad's checkpoint is kept");
    for (const stage of ["a", "independent", "sibling"]) {
      const names = [...Deno.readDirSync(join(cache, stage))].map((e) => e.name);
      assert.deepEqual(names.filter((n) => n.startsWith(".")), [], `${stage}: no leftovers`);
    }
  });
});

Deno.test("--force STAGE discards the stage's checkpoints and says so; without --force it resumes", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const cache = join(dir, "cache");
    await run(file, cache);
    const { registry } = countingRegistry();
    const pipeline = await loadPipeline(file, registry);
    const plan = await planPipeline(
      pipeline,
      new ArtifactCache(cache),
      pipelineSettings(pipeline, cache),
    );
    const progress = new ArtifactCache(cache).progressDir("b", plan[1].key);
    await Deno.mkdir(progress, { recursive: true });
    await Deno.writeTextFile(join(progress, "checkpoint.txt"), "old");
    const forced = await run(file, cache, { force: ["b"] });
    assert.match(
      forced.log,
      /--force: discarded the checkpoints in .*\.progress-[0-9a-f]{16}; starting fresh/,
    );
    assert.deepEqual(forced.runs, ["b"]);
    await assert.rejects(Deno.stat(progress), Deno.errors.NotFound, "removed after success");
  });
});

Deno.test("cadence parameters are not in the cache key, and default keys are what they were", async () => {
  await withTempDir(async (dir) => {
    const smoke = join(REPO_ROOT, "pipelines", "smoke.yaml");
    const keyOf = async (sets: string[]) => {
      const pipeline = await loadPipeline(smoke, builtinStages(), { sets });
      const plan = await planPipeline(
        pipeline,
        new ArtifactCache(dir),
        pipelineSettings(pipeline, dir),
      );
      return { plan, pipeline };
    };
    const base = await keyOf([]);
    const step = base.plan.find((s) => s.stage.type === "pretrain")!;
    // The key as it was computed before cadence parameters existed: the full parameters.
    const inputs = Object.fromEntries(step.stage.needs.map((n) => {
      const up = base.plan.find((s) => s.stage.name === n)!;
      return [n, { type: up.stage.type, key: up.key }];
    }));
    const legacy = sha256Hex(canonicalJson({
      type: step.stage.type,
      version: step.stage.definition.version,
      params: step.stage.params,
      inputs,
      files: step.files,
    }));
    assert.equal(step.key, legacy, "default settings keep their key");
    for (const set of ["pretrain.checkpoint_minutes=1", "pretrain.checkpoint_every=3"]) {
      const changed = await keyOf([set]);
      assert.equal(changed.plan.find((s) => s.stage.type === "pretrain")!.key, step.key, set);
    }
    const realChange = await keyOf(["pretrain.lr=0.00123"]);
    assert.notEqual(realChange.plan.find((s) => s.stage.type === "pretrain")!.key, step.key);
  });
});

Deno.test("a cache folder that is a file gives one line naming the path", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const notAFolder = join(dir, "plain-file");
    await Deno.writeTextFile(notAFolder, "x");
    await assert.rejects(
      run(file, notAFolder),
      (error: Error) => {
        assert.equal(error.name, "DiskError");
        assert.match(error.message, new RegExp(`^cache folder ${notAFolder}: `));
        assert.doesNotMatch(error.message, /\n/);
        return true;
      },
    );
  });
});

/** Mount a tmpfs (root only); returns undefined where that is not allowed. */
async function mountTmpfs(
  dir: string,
  options: string,
): Promise<(() => Promise<void>) | undefined> {
  const mounted = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", options, "tmpfs", dir],
    stderr: "null",
  }).output().catch(() => undefined);
  if (!mounted?.success) return undefined;
  return async () => void await new Deno.Command("umount", { args: [dir] }).output();
}

/** Mounting a tmpfs needs root (or CAP_SYS_ADMIN): the tests that do show as ignored without. */
const CANNOT_MOUNT = await (async () => {
  const probe = await Deno.makeTempDir({ prefix: "groundup-tmpfs-probe-" });
  try {
    const unmount = await mountTmpfs(probe, "size=64k");
    await unmount?.();
    return unmount === undefined;
  } finally {
    await Deno.remove(probe, { recursive: true }).catch(() => {});
  }
})();

/** The tmpfs, or a failed test: the probe above said it can be mounted. */
async function mustMountTmpfs(dir: string, options: string): Promise<() => Promise<void>> {
  const unmount = await mountTmpfs(dir, options);
  if (!unmount) throw new Error(`cannot mount a tmpfs on ${dir}, though the probe could`);
  return unmount;
}

Deno.test({
  name: "a read-only cache folder gives one line naming the path and the problem",
  ignore: CANNOT_MOUNT,
}, async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const mountPoint = join(dir, "ro");
    await Deno.mkdir(mountPoint);
    const unmount = await mustMountTmpfs(mountPoint, "ro,size=1m");
    try {
      await assert.rejects(run(file, join(mountPoint, "cache")), (error: Error) => {
        assert.equal(
          error.message,
          `cache folder ${
            join(mountPoint, "cache")
          }: the file system is read-only (choose another --cache-dir)`,
        );
        return true;
      });
    } finally {
      await unmount();
    }
  });
});

Deno.test({
  name:
    "a full disk: a stage that will not fit fails before it starts; ENOSPC names the path and keeps the checkpoint",
  ignore: CANNOT_MOUNT,
}, async () => {
  await withTempDir(async (dir) => {
    const mountPoint = join(dir, "small");
    await Deno.mkdir(mountPoint);
    const unmount = await mustMountTmpfs(mountPoint, "size=2m");
    try {
      const { registry } = countingRegistry();
      let started = 0;
      registry.register(defineStage({
        type: "big",
        version: "1",
        description: "writes a checkpoint, then more than the disk holds",
        params: z.strictObject({ declared: z.number().int() }),
        diskBytes: (p) => p.declared,
        async run(ctx) {
          started++;
          await Deno.writeTextFile(join(ctx.progressDir, "checkpoint.txt"), "step 7");
          await Deno.writeFile(join(ctx.outDir, "huge.bin"), new Uint8Array(3_000_000));
        },
      }));
      const file = await writePipeline(
        dir,
        "name: full\nstages:\n  big: { uses: big, declared: 10000000 }\n",
      );
      const cache = join(mountPoint, "cache");
      const early = await runPipeline(await loadPipeline(file, registry), {
        cacheDir: cache,
        out: capture().out,
      });
      assert.equal(started, 0, "nothing ran");
      assert.match(
        early.steps[0].error!,
        /^not enough free space in .*\/cache\/big for stage "big": needs about 10\.0 MB, [\d.]+ MB free$/,
      );
      const late = await runPipeline(
        await loadPipeline(file, registry, { sets: ["big.declared=1"] }),
        { cacheDir: cache, out: capture().out },
      );
      assert.equal(started, 1);
      assert.match(late.steps[0].error!, /cache\/big: no space left on the device/);
      assert.match(late.steps[0].error!, /the last checkpoint is kept in .*\.progress-/);
      const progress = [...Deno.readDirSync(join(cache, "big"))].find((e) =>
        e.name.startsWith(".progress-")
      )!;
      assert.equal(
        await Deno.readTextFile(join(cache, "big", progress.name, "checkpoint.txt")),
        "step 7",
      );
      const leftovers = [...Deno.readDirSync(join(cache, "big"))].filter((e) =>
        e.name.startsWith(".tmp-")
      );
      assert.equal(leftovers.length, 0, "the partial artifact is removed");
    } finally {
      await unmount();
    }
  });
});

Deno.test("a stage that needs more memory than is available fails before it starts, with both sizes", async () => {
  await withTempDir(async (dir) => {
    const { registry } = countingRegistry();
    let started = 0;
    registry.register(defineStage({
      type: "huge",
      version: "1",
      description: "declares a petabyte of memory",
      params: z.strictObject({}),
      memoryBytes: () => ({ bytes: 1e15, what: "a test model" }),
      run() {
        started++;
        return Promise.resolve();
      },
    }));
    const file = await writePipeline(dir, "name: huge\nstages:\n  huge: {}\n");
    const report = await runPipeline(await loadPipeline(file, registry), {
      cacheDir: join(dir, "cache"),
      out: capture().out,
    });
    assert.equal(started, 0);
    assert.match(
      report.steps[0].error!,
      /^not enough memory for stage "huge" \(a test model\): needs about 1000\.0 TB, [\d.]+ [GMT]B available$/,
    );
  });
});

Deno.test("two different pipelines sharing an upstream stage, run at once on one cache, compute it once", async () => {
  await withTempDir(async (dir) => {
    const one = await writePipeline(dir, CHAIN, "one.yaml");
    const two = await writePipeline(
      dir,
      "name: other\nseed: 7\nstages:\n  a: { uses: source, value: 3 }\n  d: { uses: double, needs: a, nested: { a: 5 } }\n",
      "two.yaml",
    );
    const cache = join(dir, "cache");
    const { registry, runs } = countingRegistry();
    const [p1, p2] = [await loadPipeline(one, registry), await loadPipeline(two, registry)];
    const [r1, r2] = await Promise.all([
      runPipeline(p1, { cacheDir: cache, out: capture().out }),
      runPipeline(p2, { cacheDir: cache, out: capture().out }),
    ]);
    assert.ok(r1.ok && r2.ok);
    assert.equal(runs.filter((n) => n === "a").length, 1, `a ran once: ${runs}`);
    assert.equal(r1.artifacts.a.dir, r2.artifacts.a.dir);
    assert.deepEqual(runs.filter((n) => n !== "a").sort(), ["b", "c", "d"]);
  });
});
