/**
 * The judge's answers as they arrive, one JSON line each, appended to a file. A run that is
 * interrupted (crash, Ctrl-C, a judge that went away) starts again from the file and asks only
 * what it has no answer for. An answer counts for a question only if the prompt and the judge
 * model are the same, so a changed response or another judge is asked again.
 */
import { createHash } from "node:crypto";

export interface LedgerRecord {
  /** What was asked: "score" (one response) or "pair" (two responses, one order). */
  kind: "score" | "pair";
  /** Response field (score) or "fieldA|fieldB" with the order (pair). */
  key: string;
  /** Index of the entry in the responses file. */
  index: number;
  /** sha256 of the prompt sent, so an answer is reused only for the same question. */
  prompt_sha256: string;
  /** The judge model we asked for, and the one the server says answered. */
  judge: string;
  /** The digest of the judge's weights when it was known (Ollama). */
  digest?: string;
  answered_by: string;
  reply: string;
}

export function promptHash(prompt: string): string {
  return createHash("sha256").update(prompt).digest("hex");
}

function id(kind: string, key: string, index: number): string {
  return `${kind}\u0000${key}\u0000${index}`;
}

export class JudgeLedger {
  readonly #known = new Map<string, LedgerRecord>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(readonly path: string | undefined) {}

  /**
   * Opens the ledger at `path` (created when missing; undefined: memory only). A half-written
   * last line (the process died while appending) is ignored; any other bad line is an error.
   */
  static async open(path: string | undefined): Promise<JudgeLedger> {
    const ledger = new JudgeLedger(path);
    if (!path) return ledger;
    let text = "";
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    const lines = text.split("\n");
    for (const [i, line] of lines.entries()) {
      if (!line.trim()) continue;
      try {
        const record = JSON.parse(line) as LedgerRecord;
        ledger.#known.set(id(record.kind, record.key, record.index), record);
      } catch {
        if (i === lines.length - 1) continue; // the torn tail of an interrupted append
        throw new Error(`${path}:${i + 1}: not a JSON record`);
      }
    }
    if (text && !text.endsWith("\n")) {
      // Cut the torn tail so the next append starts on a line of its own.
      await Deno.writeTextFile(path, text.slice(0, text.lastIndexOf("\n") + 1));
    }
    return ledger;
  }

  get size(): number {
    return this.#known.size;
  }

  /**
   * The recorded answer for this question, if the same prompt was put to the same judge (the
   * same model name and, when both are known, the same weights digest).
   */
  find(
    kind: LedgerRecord["kind"],
    key: string,
    index: number,
    prompt: string,
    judge: string,
    digest?: string,
  ) {
    const record = this.#known.get(id(kind, key, index));
    const sameWeights = !record?.digest || !digest || record.digest === digest;
    return record && record.prompt_sha256 === promptHash(prompt) && record.judge === judge &&
        sameWeights
      ? record
      : undefined;
  }

  /** Records an answer, appending it to the file (appends are serialized). */
  add(record: LedgerRecord): Promise<void> {
    this.#known.set(id(record.kind, record.key, record.index), record);
    if (!this.path) return Promise.resolve();
    const path = this.path;
    this.#writing = this.#writing.then(() =>
      Deno.writeTextFile(path, JSON.stringify(record) + "\n", { append: true })
    );
    return this.#writing;
  }
}

/**
 * Runs `work` on every item with at most `limit` at a time. The first failure stops new
 * items from starting; the ones under way finish (their answers are kept), then it is thrown.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++];
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
}
