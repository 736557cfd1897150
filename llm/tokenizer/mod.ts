/** Tokenizers behind one interface, described by a small serializable spec. */
import { Gpt2Tokenizer } from "./gpt2.ts";
import { SimpleTokenizer } from "./simple.ts";

/** Text ↔ token ids, whichever tokenizer a pipeline names. */
export interface Tokenizer {
  /** Short identifier recorded in artifacts ("gpt2", "simple"). */
  readonly name: string;
  /** Number of distinct ids: every id is in 0..vocabSize-1. */
  readonly vocabSize: number;
  /** The id of `<|endoftext|>`, or undefined when the vocabulary has none. */
  readonly endOfTextId: number | undefined;
  /** Token ids of `text`. */
  encode(text: string): number[];
  /** The text of `ids`; throws on an id outside the vocabulary. */
  decode(ids: Iterable<number>): string;
}

/**
 * A tokenizer as pipelines and artifacts describe it: plain data that `createTokenizer` turns back
 * into a tokenizer.
 */
export type TokenizerSpec =
  | { kind: "gpt2"; allowedSpecial?: string[] }
  | { kind: "simple"; vocabulary: string[] };

/** The tokenizer a spec describes. */
export function createTokenizer(spec: TokenizerSpec): Tokenizer {
  switch (spec.kind) {
    case "gpt2":
      return new Gpt2Tokenizer(spec.allowedSpecial);
    case "simple":
      return new SimpleTokenizer(spec.vocabulary);
  }
}

export { Gpt2Tokenizer, SimpleTokenizer };
