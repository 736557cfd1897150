/**
 * GPT-2's byte-pair encoding, through js-tiktoken (which ships the "gpt2" ranks, so no
 * download is needed). `<|endoftext|>` is allowed as a special token, as in the workshop.
 */
import { getEncoding, type Tiktoken } from "js-tiktoken";

const GPT2_END_OF_TEXT_ID = 50256;
export const GPT2_VOCAB_SIZE = 50257;

let shared: Tiktoken | undefined;

export class Gpt2Tokenizer {
  readonly name = "gpt2";
  readonly vocabSize = GPT2_VOCAB_SIZE;
  readonly endOfTextId = GPT2_END_OF_TEXT_ID;
  readonly #encoding: Tiktoken;

  constructor(readonly allowedSpecial: string[] = ["<|endoftext|>"]) {
    this.#encoding = shared ??= getEncoding("gpt2");
  }

  encode(text: string): number[] {
    return this.#encoding.encode(text, this.allowedSpecial);
  }

  decode(ids: Iterable<number>): string {
    return this.#encoding.decode([...ids]);
  }
}
