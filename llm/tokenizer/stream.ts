/**
 * Incremental decoding: token ids in, text out as soon as it is final. Every tokenizer here
 * decodes bytes: a byte-level BPE token (GPT-2, Llama 3, Qwen3) or a byte-fallback token
 * (Gemma 3, Phi-3: `<0xF0>`) can end in the middle of a UTF-8 character, which decodes to
 * U+FFFD until the rest arrives. And SentencePiece-style decoders treat the start of a text
 * specially (a leading "▁" may be stripped), so decoding one token alone is wrong.
 *
 * So each step decodes a short window twice, as Hugging Face's text-generation-inference does:
 * the tokens already emitted since the last boundary (`prefix`) and the same plus the new ones.
 * The difference is the new text, released only when it does not end in U+FFFD. Both decodes
 * start at the same token, so a leading-space rule applies to both alike; the window restarts
 * after every release, so each step costs a few tokens, not the whole sequence.
 */
import type { Tokenizer } from "./mod.ts";

/** How many ids of a prefix (e.g. the prompt) the first window starts with. */
const PREFIX_CONTEXT = 6;

/**
 * Turns ids into text as they arrive, never splitting a UTF-8 character. The concatenation of
 * everything `push` and `flush` return equals `decode(ids)` of the ids pushed (after `prefix`).
 */
export class IncrementalDecoder {
  readonly #tokenizer: Pick<Tokenizer, "decode">;
  #ids: number[];
  /** Start of the window: the text of ids[prefixStart, readStart) has been emitted. */
  #prefixStart: number;
  /** Ids from here on have not been emitted yet. */
  #readStart: number;

  /**
   * Starts after `prefix` (e.g. the prompt's ids), whose text is never emitted but gives the first
   * tokens their context (a space after a word, a character begun in the prompt).
   */
  constructor(tokenizer: Pick<Tokenizer, "decode">, prefix: readonly number[] = []) {
    this.#tokenizer = tokenizer;
    this.#ids = prefix.slice(-PREFIX_CONTEXT);
    this.#prefixStart = 0;
    this.#readStart = this.#ids.length;
  }

  /** The new text that `id` completes (often "", while a character is incomplete). */
  push(id: number): string {
    this.#ids.push(id);
    return this.#release(false);
  }

  /** Whatever is still held back (an incomplete character decodes to U+FFFD). */
  flush(): string {
    return this.#release(true);
  }

  #release(final: boolean): string {
    const window = this.#ids.slice(this.#prefixStart);
    const emitted = this.#tokenizer.decode(window.slice(0, this.#readStart - this.#prefixStart));
    const text = this.#tokenizer.decode(window);
    if (text.length <= emitted.length && !final) return "";
    if (text.endsWith("\uFFFD") && !final) return "";
    // Drop what is behind the window: the ids array never grows past a few tokens.
    this.#ids = this.#ids.slice(this.#readStart);
    this.#prefixStart = 0;
    this.#readStart = this.#ids.length;
    // Decoding is lossless, so the longer window's text extends the shorter one's.
    return text.slice(emitted.length);
  }
}
