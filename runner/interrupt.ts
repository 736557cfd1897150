/**
 * Ctrl-C and SIGTERM for a pipeline run. The first signal aborts the running stage's
 * AbortSignal: the stage finishes its step, writes a checkpoint and returns; the run then
 * exits 130 saying where the checkpoint is. A second signal exits 130 at once, leaving the
 * last checkpoint written.
 */
import type { RunReport } from "./run.ts";

export const INTERRUPTED_EXIT_CODE = 130;

export interface InterruptHandler {
  signal: AbortSignal;
  /** Tell the handler which stage runs now (for the message of a second signal). */
  stageStarted(stage: string, progressDir: string): void;
  dispose(): void;
}

export function installInterruptHandler(
  write: (line: string) => void = (line) => console.error(line),
): InterruptHandler {
  const abort = new AbortController();
  let current: { stage: string; progressDir: string } | undefined;
  const onSignal = () => {
    if (abort.signal.aborted) {
      write(
        current
          ? `\ninterrupted again: exiting now; the last checkpoint written in ${current.progressDir} is kept`
          : "\ninterrupted again: exiting now",
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
    stageStarted(stage, progressDir) {
      current = { stage, progressDir };
    },
    dispose() {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
    },
  };
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
