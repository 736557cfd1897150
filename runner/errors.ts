/**
 * Errors a user can act on: each names where the problem is (file:line:column, or a
 * command-line flag), which stage and key, and what was expected.
 */

export interface SourceLocation {
  /** A file path, or a pseudo-source such as "--set pretrain.lr=1e-3". */
  source: string;
  line?: number;
  column?: number;
}

function formatLocation(loc: SourceLocation | undefined): string {
  if (!loc) return "<pipeline>";
  if (loc.line === undefined) return loc.source;
  return `${loc.source}:${loc.line}:${loc.column ?? 1}`;
}

export interface PipelineProblem {
  location?: SourceLocation;
  /** The stage instance the problem belongs to, if any. */
  stage?: string;
  /** Dotted key path inside the stage (or the pipeline, when stage is undefined). */
  key?: string;
  message: string;
}

function formatProblem(p: PipelineProblem): string {
  const where = formatLocation(p.location);
  const what = [p.stage ? `stage "${p.stage}"` : undefined, p.key ? `key "${p.key}"` : undefined]
    .filter(Boolean).join(", ");
  return `${where}: ${what ? what + ": " : ""}${p.message}`;
}

/** A pipeline that cannot run: it lists every problem found, not only the first. */
export class PipelineError extends Error {
  constructor(readonly problems: PipelineProblem[]) {
    super(
      problems.length === 1 ? formatProblem(problems[0]) : `${problems.length} problems:\n` +
        problems.map((p) => "  " + formatProblem(p)).join("\n"),
    );
    this.name = "PipelineError";
  }
}

/** A stage failed while running; wraps the cause with the stage name. */
export class StageFailedError extends Error {
  constructor(readonly stage: string, override readonly cause: unknown) {
    super(`stage "${stage}" failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "StageFailedError";
  }
}
