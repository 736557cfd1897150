/**
 * OpenAI's original GPT-2 byte-pair encoder (gpt-2/src/encoder.py), reading `encoder.json`
 * and `vocab.bpe` as released. It is a second, independent implementation beside
 * js-tiktoken: the tests check that both give the same ids on real text, and it lets a model
 * folder that ships its own vocabulary files be used as is.
 */

/** GPT-2's reversible map from bytes to printable unicode characters. */
function bytesToUnicode(): Map<number, string> {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b); // '!'..'~'
  for (let b = 161; b <= 172; b++) printable.push(b); // '¡'..'¬'
  for (let b = 174; b <= 255; b++) printable.push(b); // '®'..'ÿ'
  const map = new Map<number, string>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    map.set(b, String.fromCodePoint(printable.includes(b) ? b : 256 + extra++));
  }
  return map;
}

/** The pre-tokenization pattern of encoder.py (contractions, letters, numbers, other, spaces). */
const PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * GPT-2's byte-pair encoding written out (the book's appendix on OpenAI's `encoder.py`), from
 * `encoder.json` and `vocab.bpe`: the readable reference the tiktoken-backed `Gpt2Tokenizer` is
 * checked against.
 */
export class OpenAiBpe {
  /** Recorded in artifacts. */
  readonly name = "gpt2-bpe";
  readonly #encoder: Map<string, number>;
  readonly #decoder: Map<number, string>;
  readonly #ranks: Map<string, number>;
  readonly #byteEncoder = bytesToUnicode();
  readonly #byteDecoder: Map<string, number>;
  readonly #cache = new Map<string, string[]>();
  readonly #specials: Map<string, number>;

  /**
   * `encoder`: token → id (encoder.json); `merges`: vocab.bpe's text (first line a version header);
   * `specials`: tokens encoded whole when they occur in text.
   */
  constructor(encoder: Record<string, number>, merges: string, specials = ["<|endoftext|>"]) {
    this.#encoder = new Map(Object.entries(encoder));
    this.#decoder = new Map([...this.#encoder].map(([token, id]) => [id, token]));
    const lines = merges.split("\n").slice(1).filter((line) => line.length > 0);
    this.#ranks = new Map(lines.map((line, rank) => [line, rank]));
    this.#byteDecoder = new Map([...this.#byteEncoder].map(([b, c]) => [c, b]));
    this.#specials = new Map(
      specials.filter((s) => this.#encoder.has(s)).map((s) => [s, this.#encoder.get(s)!]),
    );
  }

  /** Reads `encoder.json` and `vocab.bpe` from disk. */
  static async fromFiles(encoderJson: string, vocabBpe: string): Promise<OpenAiBpe> {
    return new OpenAiBpe(
      JSON.parse(await Deno.readTextFile(encoderJson)),
      await Deno.readTextFile(vocabBpe),
    );
  }

  /** Number of entries in encoder.json. */
  get vocabSize(): number {
    return this.#encoder.size;
  }

  /** The id of `<|endoftext|>`, if the encoder has it. */
  get endOfTextId(): number | undefined {
    return this.#specials.get("<|endoftext|>");
  }

  /** Merge the lowest-ranked adjacent pair until no known pair remains. */
  #bpe(token: string): string[] {
    const cached = this.#cache.get(token);
    if (cached) return cached;
    let word = [...token];
    while (word.length > 1) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.#ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) [best, bestRank] = [i, rank];
      }
      if (best < 0) break;
      const [first, second] = [word[best], word[best + 1]];
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else merged.push(word[i++]);
      }
      word = merged;
    }
    this.#cache.set(token, word);
    return word;
  }

  #encodeOrdinary(text: string, out: number[]) {
    const utf8 = new TextEncoder();
    for (const match of text.matchAll(PATTERN)) {
      const mapped = [...utf8.encode(match[0])].map((b) => this.#byteEncoder.get(b)!).join("");
      for (const piece of this.#bpe(mapped)) {
        const id = this.#encoder.get(piece);
        if (id === undefined) throw new Error(`BPE piece "${piece}" is not in encoder.json`);
        out.push(id);
      }
    }
  }

  /** Encode text; the special tokens (by default `<|endoftext|>`) are kept whole. */
  encode(text: string): number[] {
    const ids: number[] = [];
    let rest = text;
    while (rest.length > 0) {
      let next = -1, special = "";
      for (const s of this.#specials.keys()) {
        const at = rest.indexOf(s);
        if (at >= 0 && (next < 0 || at < next)) [next, special] = [at, s];
      }
      if (next < 0) {
        this.#encodeOrdinary(rest, ids);
        break;
      }
      this.#encodeOrdinary(rest.slice(0, next), ids);
      ids.push(this.#specials.get(special)!);
      rest = rest.slice(next + special.length);
    }
    return ids;
  }

  /** The text of `ids` (byte-level, then UTF-8 decoded). */
  decode(ids: Iterable<number>): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const token = this.#decoder.get(id);
      if (token === undefined) throw new Error(`token id ${id} is outside the vocabulary`);
      for (const ch of token) bytes.push(this.#byteDecoder.get(ch)!);
    }
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }
}
