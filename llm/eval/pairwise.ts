/**
 * Pairwise preference (as AlpacaEval does): for two response fields, the judge is asked which
 * answer is better, once with each field shown first, which cancels the judge's bias toward
 * a position. A field's win rate averages the two verdicts (a win 1, a tie ½, a loss 0) over
 * the entries; the judge "contradicts itself" when flipping the order flips the winner.
 */
import { formatInstructionPrompt } from "../data/instructions.ts";
import type { ResponseEntry } from "./judge.ts";
import { askAll, type Judge } from "./judge_asker.ts";
import { JudgeLedger, promptHash } from "./judge_ledger.ts";

export type Verdict = "A" | "B" | "tie";

export function pairwisePrompt(entry: ResponseEntry, first: string, second: string): string {
  return [
    "You are comparing two responses to the same request.",
    "",
    `Request:\n\`\`\`\n${formatInstructionPrompt(entry)}\n\`\`\``,
    "",
    `A correct answer, for reference:\n\`\`\`\n${entry.output}\n\`\`\``,
    "",
    `Response A:\n\`\`\`\n${entry[first]}\n\`\`\``,
    "",
    `Response B:\n\`\`\`\n${entry[second]}\n\`\`\``,
    "",
    "Which response answers the request better (correct, complete, concise)? " +
    'Answer with exactly one word: "A", "B", or "tie".',
  ].join("\n");
}

/**
 * The verdict in a reply: "A", "B" or "tie" (any case, quotes, a trailing full stop, or
 * "Response A"), else null.
 */
export function parseVerdict(reply: string): Verdict | null {
  const word = reply.trim().replace(/^[\s"'`*(]+|[\s"'`*).!]+$/g, "").replace(
    /^response\s+/i,
    "",
  );
  if (/^a$/i.test(word)) return "A";
  if (/^b$/i.test(word)) return "B";
  if (/^(tie|tied|equal|draw)$/i.test(word)) return "tie";
  return null;
}

export interface PairJudgment {
  index: number;
  /** Verdict with `first` shown as A, then with `second` shown as A. */
  verdicts: [Verdict | null, Verdict | null];
  replies: [string, string];
  /** `first`'s score for this entry: mean over the two orders of 1 / ½ / 0 (null: unparsed). */
  score: number | null;
  /** The two orders name opposite winners. */
  contradiction: boolean;
}

export interface PairwiseResult {
  first: string;
  second: string;
  total: number;
  /** Entries whose two verdicts both parsed. */
  judged: number;
  /** `first`'s win rate over the judged entries, ties as half (second's is 1 − this). */
  win_rate: number | null;
  wins: number;
  losses: number;
  ties: number;
  /** Entries where flipping the order flipped the winner, and their share of those judged. */
  contradictions: number;
  contradiction_rate: number | null;
  /** How often the judge picked whichever answer was shown first (position bias). */
  first_position_rate: number | null;
  unparsed: { index: number; replies: [string, string] }[];
  judgments: PairJudgment[];
}

/** Points for `first` from one verdict, given whether `first` was shown as A. */
function points(verdict: Verdict, firstShownAsA: boolean): number {
  if (verdict === "tie") return 0.5;
  return (verdict === "A") === firstShownAsA ? 1 : 0;
}

export function summarizePairs(
  first: string,
  second: string,
  judgments: PairJudgment[],
): PairwiseResult {
  const judged = judgments.filter((j) => j.score !== null);
  const n = judged.length;
  let wins = 0, losses = 0, ties = 0, firstPosition = 0, decisive = 0;
  for (const j of judged) {
    if (j.score! > 0.5) wins++;
    else if (j.score! < 0.5) losses++;
    else ties++;
    for (const v of j.verdicts) {
      if (v !== "tie") decisive++, firstPosition += v === "A" ? 1 : 0;
    }
  }
  const contradictions = judged.filter((j) => j.contradiction).length;
  return {
    first,
    second,
    total: judgments.length,
    judged: n,
    win_rate: n ? judged.reduce((a, j) => a + j.score!, 0) / n : null,
    wins,
    losses,
    ties,
    contradictions,
    contradiction_rate: n ? contradictions / n : null,
    first_position_rate: decisive ? firstPosition / decisive : null,
    unparsed: judgments.filter((j) => j.score === null).map((j) => ({
      index: j.index,
      replies: j.replies,
    })),
    judgments,
  };
}

export interface PairwiseOptions {
  ledgerPath?: string;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** Asks the judge about every entry in both orders (resuming from the ledger). */
export async function comparePairwise(
  entries: readonly ResponseEntry[],
  first: string,
  second: string,
  client: Judge,
  options: PairwiseOptions = {},
): Promise<PairwiseResult> {
  const ledger = await JudgeLedger.open(options.ledgerPath);
  const orders = [[first, second], [second, first]] as const;
  const jobs = entries.flatMap((entry, index) =>
    orders.map(([a, b], order) => ({
      index,
      order,
      key: `${a}|${b}`,
      prompt: pairwisePrompt(entry, a, b),
    }))
  );
  const replies = new Map<string, string>();
  const todo = jobs.filter((job) => {
    const known = ledger.find("pair", job.key, job.index, job.prompt, client.model, client.digest);
    if (known) replies.set(`${job.order}#${job.index}`, known.reply);
    return !known;
  });
  let done = jobs.length - todo.length;
  options.onProgress?.(done, jobs.length);
  const asking = { concurrency: options.concurrency ?? 4, signal: options.signal };
  await askAll(client, todo, asking, async (job, reply) => {
    await ledger.add({
      kind: "pair",
      key: job.key,
      index: job.index,
      prompt_sha256: promptHash(job.prompt),
      judge: client.model,
      ...(client.digest ? { digest: client.digest } : {}),
      answered_by: reply.model,
      reply: reply.content,
    });
    replies.set(`${job.order}#${job.index}`, reply.content);
    options.onProgress?.(++done, jobs.length);
  });
  const judgments = entries.map((_, index): PairJudgment => {
    const texts: [string, string] = [replies.get(`0#${index}`)!, replies.get(`1#${index}`)!];
    const verdicts: [Verdict | null, Verdict | null] = [
      parseVerdict(texts[0]),
      parseVerdict(texts[1]),
    ];
    const [v0, v1] = verdicts;
    const score = v0 && v1 ? (points(v0, true) + points(v1, false)) / 2 : null;
    // Opposite winners: the same letter both times means the position, not the answer, won.
    const contradiction = v0 !== null && v1 !== null && v0 !== "tie" && v0 === v1;
    return { index, verdicts, replies: texts, score, contradiction };
  });
  return summarizePairs(first, second, judgments);
}
