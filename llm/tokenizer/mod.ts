/** Tokenizers behind one interface, described by a small serializable spec. */
import { Gpt2Tokenizer } from "./gpt2.ts";
import { SimpleTokenizer } from "./simple.ts";

export interface Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly endOfTextId: number | undefined;
  encode(text: string): number[];
  decode(ids: Iterable<number>): string;
}

export type TokenizerSpec =
  | { kind: "gpt2"; allowedSpecial?: string[] }
  | { kind: "simple"; vocabulary: string[] };

export function createTokenizer(spec: TokenizerSpec): Tokenizer {
  switch (spec.kind) {
    case "gpt2":
      return new Gpt2Tokenizer(spec.allowedSpecial);
    case "simple":
      return new SimpleTokenizer(spec.vocabulary);
  }
}

export { Gpt2Tokenizer, SimpleTokenizer };
