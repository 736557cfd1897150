/**
 * What the judge's rules (judge.ts, pairwise.ts) need of a judge: a name, the digest of its
 * weights when known, and answers to prompts. Two kinds answer: a server over HTTP
 * (judge_client.ts's `JudgeClient`: Ollama, OpenAI-compatible) and a model run in this
 * process (judge_local.ts's `LocalJudge`). The rules, the ledger and the parsing are the same
 * for both; only how a prompt reaches the model differs.
 */
import type { JudgeIdentity, JudgeReply } from "./judge_client.ts";
import { forEachLimited } from "./judge_ledger.ts";

/** A judge model, remote or local. */
export interface Judge {
  /** The name the answers are recorded under (the ledger's `judge`). */
  readonly model: string;
  /** The digest of the weights, once `identify` found one (recorded with each answer). */
  readonly digest?: string;
  /** Who the judge is (looked up once, before judging). */
  identify(signal?: AbortSignal): Promise<JudgeIdentity>;
  /** One prompt as the user message; the judge's reply. */
  ask(content: string, signal?: AbortSignal): Promise<JudgeReply>;
  /**
   * Many prompts at once, each reply yielded as soon as it is ready (in any order), with the
   * prompt's index. A judge that can answer several prompts together (a local model decoding
   * them as one batch) has it; `askAll` falls back to `ask` `concurrency` at a time.
   */
  askEach?(
    contents: readonly string[],
    options: { concurrency: number; signal?: AbortSignal },
  ): AsyncIterable<{ index: number; reply: JudgeReply }>;
}

/**
 * Puts every job's prompt to the judge, `concurrency` at a time (a local judge: that many rows
 * decoded together), and hands each reply to `onReply` as it arrives (awaited, so it can be
 * written to the ledger before the next one). The first failure ends the run; replies already
 * handed over stay handled.
 */
export async function askAll<T extends { prompt: string }>(
  judge: Judge,
  jobs: readonly T[],
  options: { concurrency: number; signal?: AbortSignal },
  onReply: (job: T, reply: JudgeReply) => Promise<void>,
): Promise<void> {
  if (jobs.length === 0) return;
  if (judge.askEach) {
    const replies = judge.askEach(jobs.map((job) => job.prompt), options);
    for await (const { index, reply } of replies) await onReply(jobs[index], reply);
    return;
  }
  await forEachLimited(jobs, options.concurrency, async (job) => {
    await onReply(job, await judge.ask(job.prompt, options.signal));
  });
}
