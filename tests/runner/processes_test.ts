/**
 * Signals and concurrency across real processes (tests/runner/slow_stage_script.ts runs one
 * stage that checkpoints every 100 ms step): Ctrl-C/SIGTERM checkpoint and exit 130 naming
 * the checkpoint, a second signal exits at once, a stage that finishes is committed despite a
 * signal, two processes on one cache compute a key once (the second waits or, with
 * --no-wait, fails), and a dead process's lock and temporary folder are reclaimed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { UiApi } from "../../server/ui_api.ts";

const SCRIPT = new URL("./slow_stage_script.ts", import.meta.url).pathname;

interface Child {
  process: Deno.ChildProcess;
  /** Resolves when stdout has printed a line matching the pattern. */
  waitFor(pattern: RegExp): Promise<void>;
  /** Everything printed, once the process has exited. */
  finished: Promise<{ code: number; stdout: string; stderr: string }>;
}

function start(cache: string, mode: string, options: { steps?: number; flag?: string } = {}) {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, cache, mode, ...(options.flag ? [options.flag] : [])],
    env: { STEPS: String(options.steps ?? 30) },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let stderr = "";
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>, onText: (t: string) => void) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) onText(chunk);
  };
  const stdoutDone = pump(process.stdout, (t) => {
    stdout += t;
    for (const w of [...waiters]) {
      if (w.pattern.test(stdout)) waiters.splice(waiters.indexOf(w), 1), w.resolve();
    }
  });
  const stderrDone = pump(process.stderr, (t) => void (stderr += t));
  const child: Child = {
    process,
    waitFor: (pattern) =>
      new Promise((resolve) => {
        if (pattern.test(stdout)) resolve();
        else waiters.push({ pattern, resolve });
      }),
    finished: (async () => {
      const status = await process.status;
      await Promise.all([stdoutDone, stderrDone]);
      return { code: status.code, stdout, stderr };
    })(),
  };
  return child;
}

function entries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`${signal}: the stage checkpoints, the run exits 130 naming the checkpoint; a re-run resumes`, async () => {
    await withTempDir(async (dir) => {
      const cache = join(dir, "cache");
      const child = start(cache, "steps");
      await child.waitFor(/step 3\n/);
      child.process.kill(signal);
      const { code, stdout, stderr } = await child.finished;
      assert.equal(code, 130);
      const stopped = Number(/step (\d+)\n$/.exec(stdout)![1]);
      assert.ok(stopped >= 3 && stopped < 30, `stopped at step ${stopped}`);
      assert.match(
        stderr,
        /interrupted: slow stopped; its checkpoint is in .*\/slow\/\.progress-[0-9a-f]{16}; run the same command again to resume from it/,
      );
      const names = entries(join(cache, "slow"));
      assert.equal(names.filter((n) => !n.startsWith(".")).length, 0, "nothing committed");
      assert.equal(names.filter((n) => n.startsWith(".tmp-") || n.startsWith(".lock-")).length, 0);
      const progress = names.find((n) => n.startsWith(".progress-"))!;
      assert.equal(
        await Deno.readTextFile(join(cache, "slow", progress, "step.txt")),
        String(stopped),
      );

      const rerun = await start(cache, "steps").finished;
      assert.equal(rerun.code, 0);
      assert.match(rerun.stdout, new RegExp(`resumed from step ${stopped}\\n`));
      assert.match(rerun.stdout, /step 30\n$/);
    });
  });
}

Deno.test("a second signal exits at once (130), leaving the last checkpoint", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const child = start(cache, "hang"); // ignores the first signal, as a busy stage would
    await child.waitFor(/checkpointed/);
    child.process.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.process.kill("SIGINT");
    const { code, stderr } = await child.finished;
    assert.equal(code, 130);
    assert.match(stderr, /interrupted: stopping slow after its current step/);
    assert.match(
      stderr,
      /interrupted again: exiting now; the last checkpoint of slow, in .*\.progress-[0-9a-f]{16}, is kept: run the same command again to resume from it/,
    );
    // Its own temporary folder and lock are gone; the checkpoint stays.
    const left = entries(join(cache, "slow"));
    assert.deepEqual(left.filter((n) => n.startsWith(".tmp-") || n.startsWith(".lock-")), []);
    const progress = left.find((n) => n.startsWith(".progress-"))!;
    assert.equal(await Deno.readTextFile(join(cache, "slow", progress, "step.txt")), "1");
    // The next run takes over the dead process's lock and temporary folder and resumes.
    const rerun = await start(cache, "finish").finished;
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stdout, /resumed from step 1/);
    assert.deepEqual(entries(join(cache, "slow")).filter((n) => n.startsWith(".")), []);
  });
});

Deno.test("two signals 0.1 s apart before any checkpoint: the message says so, and the lock and temporary folder are removed", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const child = start(cache, "busy");
    await child.waitFor(/busy/);
    child.process.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 100));
    child.process.kill("SIGINT");
    const { code, stderr } = await child.finished;
    assert.equal(code, 130);
    assert.match(
      stderr,
      /interrupted again: exiting now; slow had written no checkpoint yet: running the same command again starts it from the beginning/,
    );
    assert.doesNotMatch(stderr, /checkpoint .* is kept/);
    assert.deepEqual(entries(join(cache, "slow")), [], "no lock, temporary or progress folder");
    const rerun = await start(cache, "finish").finished;
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.doesNotMatch(rerun.stdout, /resumed/);
  });
});

Deno.test("a stage that finishes after the signal is committed (exit 130), and the next run is cached", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const child = start(cache, "late");
    await child.waitFor(/step 2\n/);
    child.process.kill("SIGINT");
    const { code, stderr } = await child.finished;
    assert.equal(code, 130);
    assert.match(stderr, /interrupted after slow finished \(its result is saved\)/);
    const committed = entries(join(cache, "slow")).filter((n) => !n.startsWith("."));
    assert.equal(committed.length, 1);
    const manifest = JSON.parse(
      await Deno.readTextFile(join(cache, "slow", committed[0], "manifest.json")),
    );
    assert.ok(manifest.outputs["result.txt"], "the finished result is in the artifact");
    const rerun = await start(cache, "steps").finished;
    assert.equal(rerun.code, 0);
    assert.doesNotMatch(rerun.stdout, /step|resumed/, "nothing ran again");
  });
});

Deno.test("two processes on one cache: the second waits for the first and uses its result; --no-wait fails", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const first = start(cache, "steps", { steps: 40 });
    await first.waitFor(/step 1\n/);
    const impatient = await start(cache, "steps", { flag: "--no-wait" }).finished;
    assert.equal(impatient.code, 1);
    assert.match(
      impatient.stderr,
      new RegExp(
        `slow/[0-9a-f]{16} is being computed by another run \\(pid ${first.process.pid}, started \\d\\d:\\d\\d\\); --no-wait was given`,
      ),
    );
    const second = start(cache, "steps", { steps: 40 });
    const [a, b] = await Promise.all([first.finished, second.finished]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(
      b.stderr,
      new RegExp(
        `waiting for slow/[0-9a-f]{16} \\(pid ${first.process.pid}, started \\d\\d:\\d\\d\\)`,
      ),
    );
    assert.match(b.stderr, /computed by another run meanwhile/);
    assert.doesNotMatch(b.stdout, /step|resumed/, "the second process computed nothing");
    assert.match(a.stdout, /step 40\n$/);
    assert.doesNotMatch(a.stdout, /resumed/);
    const names = entries(join(cache, "slow"));
    assert.equal(names.length, 1, `only the artifact is left: ${names}`);
    const artifact = join(cache, "slow", names[0]);
    assert.equal(await Deno.readTextFile(join(artifact, "result.txt")), "40");
    assert.equal(await Deno.readTextFile(join(artifact, "partial.txt")), "half");
  });
});

Deno.test("a run killed with kill -9 shows on the page as interrupted at once, without its frozen progress", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    const child = start(cache, "steps");
    await child.waitFor(/step 3\n/);
    const api = new UiApi({ cacheDir: cache });
    const runs = async () => {
      const response = await api.handler(new Request("http://127.0.0.1/api/ui/runs"));
      return (await response.json()).runs;
    };
    assert.equal((await runs())[0].status, "running");
    child.process.kill("SIGKILL");
    assert.equal((await child.finished).code, 137);
    const [run] = await runs();
    assert.equal(run.status, "interrupted");
    assert.equal(run.steps[0].outcome, "interrupted");
    assert.equal(run.steps[0].progress, undefined);
  });
});
