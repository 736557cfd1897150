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

/** The book's SimpleTokenizerV2: a word-level vocabulary, unknown words map to `<|unk|>`. */
export class SimpleTokenizer {
  /** Recorded in artifacts. */
  readonly name = "simple";
  readonly #ids: Map<string, number>;

  /** `vocabulary[id]` is the token of id; it must contain `<|unk|>`. */
  constructor(readonly vocabulary: string[]) {
    this.#ids = new Map(vocabulary.map((token, id) => [token, id]));
    if (!this.#ids.has(UNKNOWN)) throw new Error(`the vocabulary lacks the ${UNKNOWN} token`);
  }

  /**
   * A tokenizer whose vocabulary is every piece of `text` (sorted), plus `<|endoftext|>` and
   * `<|unk|>`.
   */
  static fromText(text: string): SimpleTokenizer {
    return new SimpleTokenizer(buildVocabulary(splitSimple(text)));
  }

  /** Size of the vocabulary. */
  get vocabSize(): number {
    return this.vocabulary.length;
  }

  /** The id of `<|endoftext|>`, if the vocabulary has it. */
  get endOfTextId(): number | undefined {
    return this.#ids.get(END_OF_TEXT);
  }

  /** `{<|endoftext|>}` when the vocabulary has it. */
  get eosIds(): ReadonlySet<number> {
    const id = this.endOfTextId;
    return new Set(id === undefined ? [] : [id]);
  }

  /**
   * Ids of `text`'s pieces, `<|unk|>` for pieces not in the vocabulary. With `special: false`
   * a piece spelling `<|endoftext|>` or `<|unk|>` is an unknown word, not the special token.
   */
  encode(text: string, options: { special?: boolean } = {}): number[] {
    const unk = this.#ids.get(UNKNOWN)!;
    const plain = options.special === false;
    return splitSimple(text).map((token) =>
      plain && (token === END_OF_TEXT || token === UNKNOWN) ? unk : this.#ids.get(token) ?? unk
    );
  }

  /** The pieces joined by spaces, with the space before punctuation removed (the book's decode). */
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
