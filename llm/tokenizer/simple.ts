/**
 * The workshop's first tokenizer (book ch02, SimpleTokenizerV2): split on punctuation and
 * whitespace with one regular expression, map each piece to an id from a vocabulary built
 * from the corpus, and fall back to <|unk|> for anything unseen.
 */

const END_OF_TEXT = "<|endoftext|>";
const UNKNOWN = "<|unk|>";

/** The book's pattern: `([,.:;?_!"()']|--|\s)`. Captured separators are kept as tokens. */
const SPLIT = /([,.:;?_!"()']|--|\s)/;

export function splitSimple(text: string): string[] {
  return text.split(SPLIT).map((piece) => piece.trim()).filter((piece) => piece.length > 0);
}

/**
 * Sorted unique tokens, then the two special tokens last (as the book appends them).
 * Sorting compares code points, as Python's `sorted` does for str.
 */
export function buildVocabulary(tokens: Iterable<string>): string[] {
  const unique = [...new Set(tokens)].filter((t) => t !== END_OF_TEXT && t !== UNKNOWN);
  unique.sort((a, b) => {
    const x = [...a], y = [...b];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
      if (d !== 0) return d;
    }
    return x.length - y.length;
  });
  return [...unique, END_OF_TEXT, UNKNOWN];
}

export class SimpleTokenizer {
  readonly name = "simple";
  readonly #ids: Map<string, number>;

  constructor(readonly vocabulary: string[]) {
    this.#ids = new Map(vocabulary.map((token, id) => [token, id]));
    if (!this.#ids.has(UNKNOWN)) throw new Error(`the vocabulary lacks the ${UNKNOWN} token`);
  }

  static fromText(text: string): SimpleTokenizer {
    return new SimpleTokenizer(buildVocabulary(splitSimple(text)));
  }

  get vocabSize(): number {
    return this.vocabulary.length;
  }

  get endOfTextId(): number | undefined {
    return this.#ids.get(END_OF_TEXT);
  }

  encode(text: string): number[] {
    const unk = this.#ids.get(UNKNOWN)!;
    return splitSimple(text).map((token) => this.#ids.get(token) ?? unk);
  }

  decode(ids: Iterable<number>): string {
    const tokens = [...ids].map((id) => {
      const token = this.vocabulary[id];
      if (token === undefined) {
        throw new Error(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
      }
      return token;
    });
    // Joined with spaces, then the space before punctuation removed, as the book does.
    return tokens.join(" ").replace(/\s+([,.:;?!"()'])/g, "$1");
  }
}
