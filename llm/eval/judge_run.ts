/**
 * A whole judge run: who the judge is, the 0–100 scores per response field, and (for two
 * fields) the pairwise preference; everything a stage or a script writes out.
 */
import { type FieldSummary, type ResponseEntry, scoreResponses, summarizeScores } from "./judge.ts";
import type { Judge } from "./judge_asker.ts";
import { JudgeClient, type JudgeConfig, type JudgeIdentity } from "./judge_client.ts";
import { comparePairwise, type PairwiseResult } from "./pairwise.ts";

export interface JudgeRunOptions {
  fields: string[];
  /** Compare the two fields pairwise (needs exactly two). */
  pairwise?: boolean;
  ledgerPath?: string;
  concurrency?: number;
  lenient?: boolean;
  signal?: AbortSignal;
  onProgress?: (what: string, done: number, total: number) => void;
}

export interface JudgeReport {
  judge: JudgeIdentity & { answered_by: string[] };
  /** Per field: scored/total, mean, stderr, histogram, unscored replies. */
  fields: FieldSummary[];
  /** Per field: each entry's score (null: unscored) and the judge's reply. */
  scores: Record<string, { score: number | null; reply: string }[]>;
  pairwise?: PairwiseResult;
  asked: number;
  reused: number;
}

/**
 * Judges `entries`: with a server's config (a `JudgeClient` asks it over HTTP) or with a judge
 * already made (a `LocalJudge` running a model in this process). The rules are the same.
 */
export async function runJudge(
  entries: readonly ResponseEntry[],
  judge: JudgeConfig | Judge,
  options: JudgeRunOptions,
  deps: ConstructorParameters<typeof JudgeClient>[1] = {},
): Promise<JudgeReport> {
  if (options.pairwise && options.fields.length !== 2) {
    throw new Error(
      `pairwise preference needs exactly two response fields (got ${options.fields.length})`,
    );
  }
  const client = "ask" in judge ? judge : new JudgeClient(judge, deps);
  const identity = await client.identify(options.signal);
  const run = await scoreResponses(entries, client, {
    fields: options.fields,
    ledgerPath: options.ledgerPath,
    concurrency: options.concurrency,
    lenient: options.lenient,
    signal: options.signal,
    onProgress: (done, total) => options.onProgress?.("scores", done, total),
  });
  const pairwise = options.pairwise
    ? await comparePairwise(entries, options.fields[0], options.fields[1], client, {
      ledgerPath: options.ledgerPath,
      concurrency: options.concurrency,
      signal: options.signal,
      onProgress: (done, total) => options.onProgress?.("pairwise", done, total),
    })
    : undefined;
  return {
    judge: { ...identity, answered_by: [...new Set(run.fields.map((f) => f.answeredBy))] },
    fields: run.fields.map((f) => summarizeScores(f.field, f.scores, f.replies)),
    scores: Object.fromEntries(
      run.fields.map((
        f,
      ) => [f.field, f.scores.map((score, i) => ({ score, reply: f.replies[i] }))]),
    ),
    ...(pairwise ? { pairwise } : {}),
    asked: run.asked,
    reused: run.reused,
  };
}
