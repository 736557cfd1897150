/**
 * A fine-tuned model's answer, cut as its prompt template says ({@link PromptTemplate}'s
 * `extractResponse`: the response header removed once, the whitespace around trimmed), but
 * piece by piece, so that a streamed answer is the same text as the whole one.
 */
import type { PromptTemplate } from "../llm/data/instructions.ts";

/** The template's response header without its surrounding whitespace (e.g. "<|assistant|>:"). */
export function responseMarker(template: PromptTemplate): string {
  // The header is what query() adds to prompt(); the interface does not name it.
  const entry = { instruction: "x" };
  return template.query(entry).slice(template.prompt(entry).length).trim();
}

/** How many characters at the end of `text` could be the start of `marker`. */
function markerPrefixAtEnd(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(marker.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Cuts a continuation incrementally: `push` takes each new piece of the model's text and gives
 * what of the answer is certain so far; `end` gives the rest. The pieces joined equal
 * `template.extractResponse(whole text)`: text that could still begin the header is held back
 * until the header is found (and dropped) or ruled out, and trailing whitespace is held back
 * until more text follows it.
 */
export class ResponseStream {
  readonly #template: PromptTemplate;
  readonly #marker: string;
  #text = "";
  #sent = 0;

  constructor(template: PromptTemplate) {
    this.#template = template;
    this.#marker = responseMarker(template);
  }

  /** The answer text that can no longer change, given `piece` more of the continuation. */
  push(piece: string): string {
    this.#text += piece;
    const found = this.#marker === "" || this.#text.includes(this.#marker);
    const stable = found
      ? this.#text
      : this.#text.slice(0, this.#text.length - markerPrefixAtEnd(this.#text, this.#marker));
    return this.#emit(this.#template.extractResponse(stable));
  }

  /** The rest of the answer, once the continuation is complete. */
  end(): string {
    return this.#emit(this.#template.extractResponse(this.#text));
  }

  /**
   * The new part of `answer`. Each answer is a prefix of the final one: the text it comes
   * from holds no possible start of the header, and the end it trimmed is only whitespace.
   */
  #emit(answer: string): string {
    if (answer.length <= this.#sent) return "";
    const out = answer.slice(this.#sent);
    this.#sent = answer.length;
    return out;
  }
}
