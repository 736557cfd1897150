/**
 * A judge run in this process (the workshop's part 6 judges with Llama-3-8B-Instruct loaded by
 * LitGPT, not a server): any model folder `openModelFolder` opens, the judge's prompt as the
 * user message of the model's own chat template, greedy decoding, at most `maxNewTokens` new
 * tokens (50 by default, as LitGPT's `generate`), stopping at the model's end-of-turn ids.
 *
 * It answers through the same {@link Judge} interface as the HTTP client, so the book's rules
 * (judge.ts: strict integers, unscored replies kept, the resumable ledger; pairwise.ts: both
 * orders) apply unchanged. Several prompts are decoded together (`batchGenerateRows`: left
 * padding masked out, positions from each row's first token), shortest first so that little
 * of a batch is padding; greedy replies equal one-by-one decoding (the tests check it).
 */
import { createHash } from "node:crypto";
import { batchGenerateRows } from "../infer/batch_generate.ts";
import type { OpenedModelFolder } from "../infer/open_model.ts";
import type { Judge } from "./judge_asker.ts";
import type { JudgeIdentity, JudgeReply } from "./judge_client.ts";

/** LitGPT's `generate` default, which the workshop's judge ran with. */
export const LOCAL_JUDGE_MAX_NEW_TOKENS = 50;

/** How a local judge is set up. */
export interface LocalJudgeOptions {
  /** The name its answers are recorded under (an upstream stage's name, a Hub repository). */
  name: string;
  /** The digest of its weights (see {@link weightsDigest}); answers of other weights are asked again. */
  digest?: string;
  /** Where the model came from, for judge.json (e.g. {stage, key} or {repo, commit}). */
  source?: Record<string, string | null>;
  /** New tokens per reply at most (default 50). */
  maxNewTokens?: number;
  /**
   * Qwen3's `enable_thinking` for templates that read it; default false (the judge is told to
   * answer with a number only, and a thinking block would use up the new tokens).
   */
  enableThinking?: boolean;
}

/**
 * The digest of a model's weights from the sha256 of its weight files (`*.safetensors`, as the
 * manifest or the Hub listing records them): one file's hash as it is, several files (shards)
 * hashed together by name. Undefined when no weight file is listed.
 */
export function weightsDigest(
  files: readonly { name: string; sha256: string }[],
): string | undefined {
  const weights = files.filter((f) => f.name.endsWith(".safetensors"))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (weights.length === 0) return undefined;
  if (weights.length === 1) return `sha256:${weights[0].sha256}`;
  const lines = weights.map((f) => `${f.name} ${f.sha256}\n`).join("");
  return `sha256:${createHash("sha256").update(lines).digest("hex")}`;
}

/** A judge model in this process, answering through its chat template. */
export class LocalJudge implements Judge {
  readonly model: string;
  readonly digest?: string;
  readonly maxNewTokens: number;
  readonly #opened: OpenedModelFolder;
  readonly #options: LocalJudgeOptions;

  constructor(opened: OpenedModelFolder, options: LocalJudgeOptions) {
    const maxNewTokens = options.maxNewTokens ?? LOCAL_JUDGE_MAX_NEW_TOKENS;
    if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 1)) {
      throw new Error(`the local judge's max_new_tokens must be an integer ≥ 1 (${maxNewTokens})`);
    }
    this.#opened = opened;
    this.#options = options;
    this.model = options.name;
    this.digest = options.digest;
    this.maxNewTokens = maxNewTokens;
  }

  /** The prompt's ids: the content as the one user message of the model's chat format. */
  encode(content: string): number[] {
    const messages = [{ role: "user", content }];
    return this.#opened.chat.encode(messages, {
      enableThinking: this.#options.enableThinking ?? false,
    });
  }

  /** The prompt text the model continues (for inspection; `encode` gives its ids). */
  render(content: string): string {
    const messages = [{ role: "user", content }];
    return this.#opened.chat.render(messages, {
      enableThinking: this.#options.enableThinking ?? false,
    });
  }

  identify(): Promise<JudgeIdentity> {
    const opened = this.#opened;
    return Promise.resolve({
      api: "local",
      model: this.model,
      ...(this.digest ? { digest: this.digest } : {}),
      ...(this.#options.source ? { source: this.#options.source } : {}),
      generation: {
        family: opened.family,
        chat_format: opened.chat.name,
        greedy: true,
        max_new_tokens: this.maxNewTokens,
        ...(this.#options.enableThinking ? { enable_thinking: true } : {}),
      },
    });
  }

  /** Frees the model's weights. */
  dispose(): void {
    this.#opened.model.dispose();
  }

  async ask(content: string, signal?: AbortSignal): Promise<JudgeReply> {
    for await (const { reply } of this.askEach([content], { concurrency: 1, signal })) {
      return reply;
    }
    throw new Error("the local judge gave no reply"); // askEach yields one per prompt
  }

  /** Decodes the prompts `concurrency` rows at a time; each reply as soon as its row ends. */
  async *askEach(
    contents: readonly string[],
    options: { concurrency: number; signal?: AbortSignal },
  ): AsyncGenerator<{ index: number; reply: JudgeReply }> {
    const { model, tokenizer, chat, vocabLimit } = this.#opened;
    const prompts = contents.map((content, index) => ({ index, ids: this.encode(content) }))
      // Stable: equal lengths keep their order; similar lengths share a batch.
      .sort((a, b) => a.ids.length - b.ids.length);
    const rows = batchGenerateRows(model, prompts.map((p) => p.ids), {
      maxNewTokens: this.maxNewTokens,
      temperature: 0,
      stopIds: chat.stopIds,
      vocabLimit,
      maxRows: Math.max(1, options.concurrency),
      signal: options.signal,
    });
    for await (const { row, tokens } of rows) {
      yield {
        index: prompts[row].index,
        reply: { content: tokenizer.decode(tokens), model: this.model },
      };
    }
  }
}
