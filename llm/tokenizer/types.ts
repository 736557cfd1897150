/** The tokenizer interface every tokenizer implements (kept apart so implementations need not import mod.ts). */

/** How {@link Tokenizer.encode} treats special tokens. */
export interface EncodeOptions {
  /**
   * true (the default): text that spells a special token ("<|endoftext|>", "<|im_end|>") becomes
   * that token. false: it is encoded as plain text — for text a user typed, so that it cannot
   * forge control tokens (prompt injection).
   */
  special?: boolean;
  /**
   * true (the default): add what the tokenizer adds around every text (BOS for Llama 3.1/3.2 and
   * Gemma 3; nothing for GPT-2, Qwen3 or Llama 3.0), but not twice when the text already begins
   * with it. false for text that is part of a longer sequence (a rendered chat).
   */
  addBos?: boolean;
}

/** Text ↔ token ids, whichever tokenizer a pipeline names. */
export interface Tokenizer {
  /** Short identifier recorded in artifacts ("gpt2", "simple", "hf"). */
  readonly name: string;
  /** Number of distinct ids: every id is in 0..vocabSize-1. */
  readonly vocabSize: number;
  /**
   * The id that ends a text: GPT-2's `<|endoftext|>`, a Hugging Face tokenizer's eos_token;
   * undefined when the vocabulary has none.
   */
  readonly endOfTextId: number | undefined;
  /** The beginning-of-sequence token, when the tokenizer has one (Llama 3, Gemma 3). */
  readonly bosId?: number;
  /** Every id that ends generation (GPT-2: {50256}; Llama 3 Instruct: 128001 and 128009). */
  readonly eosIds: ReadonlySet<number>;
  /** Token ids of `text`. */
  encode(text: string, options?: EncodeOptions): number[];
  /** The text of `ids`; throws on an id outside the vocabulary. */
  decode(ids: Iterable<number>): string;
}
