/**
 * Ctrl-C and SIGTERM for a pipeline run. The first signal aborts the running stage's
 * AbortSignal: the stage finishes its step, writes a checkpoint and returns; the run then
 * exits 130 saying where the checkpoint is. A second signal exits 130 at once, leaving the
 * last checkpoint written; on its way out it removes what only this process used (the
 * stage's temporary folder, its lock) and says whether a checkpoint exists.
 */
import type { RunReport } from "./run_report.ts";
import type { LockOwner } from "./lock.ts";

/** What a running stage holds that nobody else may use while this process lives. */
export interface StageHoldings {
  /** The key's lock file (removed only if it still names this process). */
  lockPath: string;
  /** The temporary output folder. */
  tempDir: string;
}

export const INTERRUPTED_EXIT_CODE = 130;

export interface InterruptHandler {
  signal: AbortSignal;
  /**
   * Tell the handler which stage runs now and what it holds (for a second signal's message
   * and clean-up).
   */
  stageStarted(stage: string, progressDir: string, holdings?: StageHoldings): void;
  dispose(): void;
}

export function installInterruptHandler(
  write: (line: string) => void = (line) => console.error(line),
): InterruptHandler {
  const abort = new AbortController();
  let current: { stage: string; progressDir: string; holdings?: StageHoldings } | undefined;
  const onSignal = () => {
    if (abort.signal.aborted) {
      if (!current) {
        write("\ninterrupted again: exiting now");
        Deno.exit(INTERRUPTED_EXIT_CODE);
      }
      if (current.holdings) releaseNow(current.holdings);
      const kept = hasEntries(current.progressDir);
      if (!kept) removeQuietly(current.progressDir); // the empty folder made for checkpoints
      write(
        kept
          ? `\ninterrupted again: exiting now; the last checkpoint of ${current.stage}, in ` +
            `${current.progressDir}, is kept: run the same command again to resume from it`
          : `\ninterrupted again: exiting now; ${current.stage} had written no checkpoint yet: ` +
            "running the same command again starts it from the beginning",
      );
      Deno.exit(INTERRUPTED_EXIT_CODE);
    }
    write(
      `\ninterrupted: ${
        current
          ? `stopping ${current.stage} after its current step and saving a checkpoint`
          : "stopping"
      } (press Ctrl-C again to quit at once)`,
    );
    abort.abort(new Error("interrupted"));
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  return {
    signal: abort.signal,
    stageStarted(stage, progressDir, holdings) {
      current = { stage, progressDir, holdings };
    },
    dispose() {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
    },
  };
}

/** Whether `dir` exists and holds anything. */
function hasEntries(dir: string): boolean {
  try {
    for (const _ of Deno.readDirSync(dir)) return true;
  } catch { /* missing */ }
  return false;
}

function removeQuietly(path: string, recursive = false) {
  try {
    Deno.removeSync(path, { recursive });
  } catch { /* already gone */ }
}

/**
 * Removes the stage's temporary folder and its lock, synchronously (the process exits right
 * after). The lock only if it still names this process: once released, another run may hold it.
 */
function releaseNow(holdings: StageHoldings) {
  removeQuietly(holdings.tempDir, true);
  try {
    const owner = JSON.parse(Deno.readTextFileSync(holdings.lockPath)) as LockOwner;
    if (owner.pid === Deno.pid) removeQuietly(holdings.lockPath);
  } catch { /* gone, or not ours to judge */ }
}

/** The closing line of an interrupted run: what was kept and how to continue. */
export function interruptedMessage(report: RunReport): string {
  const stopped = report.interrupted;
  if (!stopped) return "interrupted";
  const ran = report.steps.find((s) => s.stage === stopped.stage);
  if (ran?.outcome === "ran") {
    const left = report.steps.slice(report.steps.indexOf(ran) + 1).some((s) =>
      s.outcome === "skipped"
    );
    return `interrupted after ${stopped.stage} finished (its result is saved); ${
      left
        ? "run the same command again to continue with the stages after it"
        : "nothing was left to run"
    }`;
  }
  if (stopped.whileWaiting) {
    return `interrupted while waiting for another run to compute ${stopped.stage}; run the same command again to use its result`;
  }
  return stopped.checkpointKept
    ? `interrupted: ${stopped.stage} stopped; its checkpoint is in ${stopped.progressDir}; run the same command again to resume from it`
    : `interrupted: ${stopped.stage} stopped before writing a checkpoint; running the same command again starts it from the beginning`;
}
