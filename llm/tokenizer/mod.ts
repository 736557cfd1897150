/** Tokenizers behind one interface, described by a small serializable spec. */
import { Gpt2Tokenizer } from "./gpt2.ts";
import { SimpleTokenizer } from "./simple.ts";
import type { Tokenizer } from "./types.ts";
export type { EncodeOptions, Tokenizer } from "./types.ts";

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
export { HfTokenizer, loadHfTokenizer } from "./hf.ts";
