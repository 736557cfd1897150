/**
 * GPT-2's byte-pair encoding, through js-tiktoken (which ships the "gpt2" ranks, so no
 * download is needed). `<|endoftext|>` is allowed as a special token, as in the workshop.
 */
import { getEncoding, type Tiktoken } from "js-tiktoken";
import type { EncodeOptions } from "./types.ts";

const GPT2_END_OF_TEXT_ID = 50256;
export const GPT2_VOCAB_SIZE = 50257;

let shared: Tiktoken | undefined;

/**
 * GPT-2's tokenizer (the book's `tiktoken.get_encoding("gpt2")`); the ranks are loaded once per
 * process.
 */
export class Gpt2Tokenizer {
  /** Recorded in artifacts. */
  readonly name = "gpt2";
  /** 50257 ids: 50000 merges, 256 bytes and `<|endoftext|>`. */
  readonly vocabSize: number = GPT2_VOCAB_SIZE;
  /** 50256. */
  readonly endOfTextId: number = GPT2_END_OF_TEXT_ID;
  /** {50256}: GPT-2 ends a text with `<|endoftext|>`. */
  readonly eosIds: ReadonlySet<number> = new Set([GPT2_END_OF_TEXT_ID]);
  /** GPT-2 has no beginning-of-sequence token. */
  readonly bosId: number | undefined = undefined;
  readonly #encoding: Tiktoken;

  /**
   * `allowedSpecial`: special tokens encoded as their id when they appear in text (others are an
   * error, as in tiktoken).
   */
  constructor(readonly allowedSpecial: string[] = ["<|endoftext|>"]) {
    this.#encoding = shared ??= getEncoding("gpt2");
  }

  /**
   * GPT-2 BPE ids of `text`. With `special: false`, `<|endoftext|>` in the text is plain text
   * (`<`, `|`, `endoftext`, `|>`), as for anything a user typed.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (options.special === false) return this.#encoding.encode(text, [], []);
    return this.#encoding.encode(text, this.allowedSpecial);
  }

  /** The text of `ids` (invalid UTF-8 sequences become U+FFFD). */
  decode(ids: Iterable<number>): string {
    return this.#encoding.decode([...ids]);
  }
}
