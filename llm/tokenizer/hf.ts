/**
 * Hugging Face tokenizers: a model folder's `tokenizer.json` (+ `tokenizer_config.json`, and the
 * eos ids of `generation_config.json` / `config.json`) through `@huggingface/tokenizers`, the
 * pure-TypeScript port of HF's `tokenizers`. It covers byte-level BPE (Llama 3, Qwen3, SmolLM2,
 * Phi-2) and SentencePiece-style BPE with byte fallback (Gemma 3, Phi-3).
 *
 * The library's normalizer, pre-tokenizer, model, post-processor and decoder are used as they are.
 * Only the first step of encoding, cutting the text at added tokens, is done here, because the
 * library always turns text that spells a special token ("<|im_end|>", "<|eot_id|>") into that
 * token. Text a user typed must not become a control token (prompt injection), so
 * `encode(text, {special: false})` cuts the text only at the non-special added tokens (such as
 * Gemma's "\n" tokens), as transformers does with `split_special_tokens=True`.
 */
import { join } from "node:path";
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import type { EncodeOptions, Tokenizer } from "./types.ts";

/** One entry of tokenizer.json's `added_tokens`. */
interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
}

/** A node of {@link TokenMatcher}'s trie: the token whose text ends here, if any. */
interface TrieNode {
  next: Map<string, TrieNode>;
  token?: { token: AddedToken; length: number };
}

/** An added token found in a text, at `start`. */
interface TokenMatch {
  start: number;
  /** Characters matched (the normalized content's length for normalized tokens). */
  length: number;
  token: AddedToken;
}

/**
 * Finds added tokens in text: at each position the longest token that starts there, scanning
 * left to right (what HF's added-vocabulary matcher and the library's splitter do).
 * `key` gives the text a token is matched by (its content, or its normalized content).
 */
class TokenMatcher {
  /** A trie over the tokens' texts, one character per level. */
  readonly #root: TrieNode = { next: new Map() };

  constructor(
    tokens: readonly AddedToken[],
    key: (token: AddedToken) => string = (t) => t.content,
  ) {
    for (const token of tokens) {
      const text = key(token);
      if (text === "") continue;
      let node = this.#root;
      for (let k = 0; k < text.length; k++) { // UTF-16 units, as find() reads the text
        let child = node.next.get(text[k]);
        if (!child) node.next.set(text[k], child = { next: new Map() });
        node = child;
      }
      node.token ??= { token, length: text.length };
    }
  }

  /** Every added token in `text`, in order, none overlapping. */
  find(text: string): TokenMatch[] {
    const found: TokenMatch[] = [];
    for (let i = 0; i < text.length;) {
      let node: TrieNode | undefined = this.#root, longest: TrieNode["token"];
      for (let j = i; j < text.length; j++) {
        node = node.next.get(text[j]);
        if (!node) break;
        if (node.token) longest = node.token;
      }
      if (!longest) {
        i++;
        continue;
      }
      found.push({ start: i, ...longest });
      i += longest.length;
    }
    return found;
  }

  /** `text` cut into plain pieces (strings) and the added tokens between them. */
  split(text: string): (string | AddedToken)[] {
    return splitAt(text, this.find(text));
  }
}

/**
 * `text` cut at `matches` (sorted, not overlapping) into plain pieces and tokens; a token with
 * lstrip/rstrip swallows the whitespace next to it, as in HF.
 */
function splitAt(text: string, matches: readonly TokenMatch[]): (string | AddedToken)[] {
  const pieces: (string | AddedToken)[] = [];
  let start = 0;
  for (const { start: at, length, token } of matches) {
    if (at > start) pieces.push(text.slice(start, at));
    pieces.push(token);
    start = at + length;
  }
  if (start < text.length) pieces.push(text.slice(start));
  pieces.forEach((piece, i) => {
    if (typeof piece === "string") return;
    const before = pieces[i - 1], after = pieces[i + 1];
    if (piece.lstrip && typeof before === "string") pieces[i - 1] = before.trimEnd();
    if (piece.rstrip && typeof after === "string") pieces[i + 1] = after.trimStart();
  });
  return pieces;
}

/** The content of a token as tokenizer_config.json writes it: a string or `{content: ...}`. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (
    value && typeof value === "object" &&
    typeof (value as { content?: unknown }).content === "string"
  ) {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** An `eos_token_id` / `bos_token_id` of config.json or generation_config.json: one id or a list. */
function idList(value: unknown, where: string): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const id of list) {
    if (!Number.isInteger(id) || id < 0) {
      throw new Error(
        `${where}: expected a token id or a list of token ids, got ${JSON.stringify(value)}`,
      );
    }
  }
  return list as number[];
}

/** What {@link HfTokenizer.fromJson} needs besides tokenizer.json. */
export interface HfTokenizerSources {
  /** tokenizer_config.json ({} when the folder has none). */
  config?: Record<string, unknown>;
  /** More end-of-sequence ids (generation_config.json's and config.json's `eos_token_id`). */
  extraEosIds?: readonly number[];
  /** Where tokenizer.json came from, for error messages. */
  source?: string;
}

/**
 * A Hugging Face tokenizer behind the project's {@link Tokenizer} interface. Decoding is lossless
 * (no `clean_up_tokenization_spaces`), so the text of a sequence is the concatenation of the text
 * its pieces add (see {@link IncrementalDecoder}).
 */
export class HfTokenizer implements Tokenizer {
  /** Recorded in artifacts. */
  readonly name = "hf";
  /** Ids run 0..vocabSize-1 (the model's embedding may have more rows). */
  readonly vocabSize: number;
  /** The tokenizer's eos_token (the first end-of-sequence id when it names none). */
  readonly endOfTextId: number | undefined;
  /** The id of tokenizer_config.json's bos_token; undefined when there is none (Qwen3). */
  readonly bosId: number | undefined;
  /** Every id that ends a sequence: eos_token plus generation_config/config eos_token_id. */
  readonly eosIds: ReadonlySet<number>;
  /** bos_token's text ("" when there is none), as chat templates use it. */
  readonly bosToken: string;
  /** eos_token's text ("" when there is none), as chat templates use it. */
  readonly eosToken: string;
  /** Special tokens (tokenizer.json's added tokens marked special) by their text. */
  readonly specialTokens: ReadonlyMap<string, number>;
  /** Ids the post-processor puts before every text (Llama 3.1/3.2 and Gemma 3: BOS). */
  readonly prefixIds: readonly number[];
  /** Ids the post-processor puts after every text (none for the families we support). */
  readonly suffixIds: readonly number[];
  /** tokenizer_config.json as read (chat_template, bos_token, ...). */
  readonly config: Readonly<Record<string, unknown>>;
  /** Where the tokenizer came from (a folder or file), for messages. */
  readonly source: string;

  readonly #library: LibraryTokenizer;
  /** Added tokens matched in the raw text: the special ones, and the others. */
  readonly #rawSpecial: TokenMatcher;
  readonly #rawPlain: TokenMatcher;
  /** Added tokens with `normalized: true`, matched in the normalized text: all / non-special. */
  readonly #normalizedAll: TokenMatcher;
  readonly #normalizedPlain: TokenMatcher;
  readonly #addedByContent: Map<string, AddedToken>;
  readonly #removeSpace: boolean;

  private constructor(json: Record<string, unknown>, sources: HfTokenizerSources) {
    const source = this.source = sources.source ?? "<tokenizer.json>";
    const config = this.config = sources.config ?? {};
    const added = checkTokenizerJson(json, source);
    if (config.do_lowercase_and_remove_accent === true) {
      throw new Error(`${source}: do_lowercase_and_remove_accent (XLM) is not supported`);
    }
    try {
      this.#library = new LibraryTokenizer(json, config);
    } catch (error) {
      throw new Error(
        `${source}: not a tokenizer @huggingface/tokenizers can load: ${(error as Error).message}`,
      );
    }
    this.vocabSize = this.#library.model!.vocab.length;
    this.#removeSpace = config.remove_space === true;
    this.#addedByContent = new Map(added.map((t) => [t.content, t]));
    const normalizer = this.#library.normalizer;
    const raw = added.filter((t) => !t.normalized || normalizer === null);
    this.#rawSpecial = new TokenMatcher(raw.filter((t) => t.special));
    this.#rawPlain = new TokenMatcher(raw.filter((t) => !t.special));
    const normalized = added.filter((t) => t.normalized && normalizer !== null);
    const key = (t: AddedToken) => normalizer!(t.content);
    this.#normalizedAll = new TokenMatcher(normalized, key);
    this.#normalizedPlain = new TokenMatcher(normalized.filter((t) => !t.special), key);
    this.specialTokens = new Map(added.filter((t) => t.special).map((t) => [t.content, t.id]));

    const configToken = (key: string): number | undefined => {
      const content = tokenContent(config[key]);
      if (content === undefined) return undefined;
      const id = this.tokenId(content);
      if (id === undefined) {
        throw new Error(
          `${source}: tokenizer_config.json's ${key} ${
            JSON.stringify(content)
          } is not in the vocabulary`,
        );
      }
      return id;
    };
    this.bosId = configToken("bos_token");
    const eosId = configToken("eos_token");
    this.bosToken = tokenContent(config.bos_token) ?? "";
    this.eosToken = tokenContent(config.eos_token) ?? "";
    const eos = [...(eosId === undefined ? [] : [eosId]), ...(sources.extraEosIds ?? [])];
    for (const id of eos) {
      if (id >= this.vocabSize) {
        throw new Error(
          `${source}: end-of-sequence id ${id} is outside the vocabulary (size ${this.vocabSize})`,
        );
      }
    }
    this.eosIds = new Set(eos);
    this.endOfTextId = eos[0];

    // What the post-processor adds: compare a probe text encoded with and without it.
    const plain = this.#library.encode("a", { add_special_tokens: false }).ids;
    const full = this.#library.encode("a", { add_special_tokens: true }).ids;
    const at = full.findIndex((_, i) => plain.every((id, j) => full[i + j] === id));
    if (at < 0) throw new Error(`${source}: the post-processor drops the text it should wrap`);
    this.prefixIds = full.slice(0, at);
    this.suffixIds = full.slice(at + plain.length);
  }

  /**
   * A tokenizer from parsed tokenizer.json (and tokenizer_config.json in `sources.config`).
   * Throws, naming `sources.source`, when the JSON is not a Hugging Face tokenizer.
   */
  static fromJson(json: unknown, sources: HfTokenizerSources = {}): HfTokenizer {
    return new HfTokenizer(json as Record<string, unknown>, sources);
  }

  /** The id of a token's text (an added token or a vocabulary entry), or undefined. */
  tokenId(token: string): number | undefined {
    return this.#library.token_to_id(token);
  }

  /** The text of one id as the vocabulary stores it (byte-level or "▁" form), or undefined. */
  idToToken(id: number): string | undefined {
    return this.#library.id_to_token(id);
  }

  /**
   * Token ids of `text`. `special` (default true): text that spells a special token becomes it;
   * false for text a user typed. `addBos` (default true): add what the post-processor adds
   * ({@link prefixIds}, {@link suffixIds}), but not when the text already starts (ends) with it.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const body = options.special === false
      ? this.#encodeText(text, false, 0)
      : this.encodeWithControlAt(text, () => true);
    if (options.addBos === false) return body;
    const startsWith = (ids: readonly number[]) => ids.every((id, i) => body[i] === id);
    const endsWith = (ids: readonly number[]) =>
      ids.every((id, i) => body[body.length - ids.length + i] === id);
    const prefix = this.prefixIds.length > 0 && startsWith(this.prefixIds) ? [] : this.prefixIds;
    const suffix = this.suffixIds.length > 0 && endsWith(this.suffixIds) ? [] : this.suffixIds;
    return [...prefix, ...body, ...suffix];
  }

  /**
   * Ids of `text` with its special tokens recognised only where `isControl(start)` says so
   * (`start`: the token's offset in `text`); elsewhere they are encoded as plain text. Chat
   * formats use it to keep the control tokens their template wrote while the same text inside a
   * message stays text. Nothing is added around the text (no BOS).
   */
  encodeWithControlAt(text: string, isControl: (start: number) => boolean): number[] {
    const control = this.#rawSpecial.find(text).filter((match) => isControl(match.start));
    const ids: number[] = [];
    splitAt(text, control).forEach((piece, section) => {
      if (typeof piece === "string") ids.push(...this.#encodeText(piece, true, section));
      else ids.push(piece.id);
    });
    return ids;
  }

  /** The text of `ids`, special tokens included; throws on an id outside the vocabulary. */
  decode(ids: Iterable<number>): string {
    const list = [...ids];
    for (const id of list) {
      if (
        !Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.idToToken(id) === undefined
      ) {
        throw new Error(
          `token id ${id} is outside the vocabulary (size ${this.vocabSize}) of ${this.source}`,
        );
      }
    }
    if (list.length === 0) return "";
    return this.#library.decode(list, { clean_up_tokenization_spaces: false });
  }

  /**
   * The library's `encode_text` on a text without control tokens: cut at the non-special added
   * tokens, then normalizer, tokens matched after normalization (special ones only when
   * `normalizedSpecial`), pre-tokenizer (told the section's index: Metaspace's "first" prefix)
   * and the model. `firstSection` numbers the sections when `text` is a part of a longer text.
   */
  #encodeText(text: string, normalizedSpecial: boolean, firstSection: number): number[] {
    const lib = this.#library;
    const model = lib.model!;
    const idOf = (token: string): number => {
      const id = this.#addedByContent.get(token)?.id ?? model.tokens_to_ids.get(token) ??
        model.unk_token_id;
      if (id === undefined) {
        throw new Error(
          `${this.source}: the model produced ${JSON.stringify(token)}, which has no id`,
        );
      }
      return id;
    };
    const ids: number[] = [];
    const normalizedTokens = normalizedSpecial ? this.#normalizedAll : this.#normalizedPlain;
    this.#rawPlain.split(text).forEach((section, i) => {
      if (typeof section !== "string") return void ids.push(section.id);
      let piece = section;
      if (this.#removeSpace) piece = piece.trim().split(/\s+/).join(" ");
      if (lib.normalizer && piece.length > 0) piece = lib.normalizer(piece);
      if (piece.length === 0) return;
      for (const sub of normalizedTokens.split(piece)) {
        if (typeof sub !== "string") ids.push(sub.id);
        else if (sub.length > 0) {
          ids.push(...model(this.#preTokenize(sub, firstSection + i)).map(idOf));
        }
      }
    });
    return ids;
  }

  #preTokenize(text: string, sectionIndex: number): string[] {
    const pre = this.#library.pre_tokenizer;
    return pre ? pre(text, { section_index: sectionIndex }) : [text];
  }
}

/** Checks that `json` looks like HF's tokenizer.json and returns its added tokens. */
function checkTokenizerJson(json: unknown, source: string): AddedToken[] {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object (a Hugging Face tokenizer.json)`);
  }
  const record = json as Record<string, unknown>;
  if ("kind" in record && !("model" in record)) {
    throw new Error(
      `${source}: this is groundup's own tokenizer spec (kind ${JSON.stringify(record.kind)}), ` +
        `not a Hugging Face tokenizer.json`,
    );
  }
  const model = record.model as Record<string, unknown> | undefined;
  if (model === null || typeof model !== "object" || Array.isArray(model)) {
    throw new Error(
      `${source}: has no "model" object (a Hugging Face tokenizer.json has model, added_tokens, ...)`,
    );
  }
  if (model.vocab === undefined) throw new Error(`${source}: model has no "vocab"`);
  const supported = ["BPE", "WordPiece", "Unigram"];
  if (model.type !== undefined && !supported.includes(model.type as string)) {
    throw new Error(
      `${source}: model type ${JSON.stringify(model.type)} is not supported (expected ${
        supported.join(", ")
      })`,
    );
  }
  const added = record.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${source}: "added_tokens" is not a list`);
  record.added_tokens = added;
  return added.map((token, index) => {
    const t = token as Record<string, unknown>;
    if (!t || !Number.isInteger(t.id) || typeof t.content !== "string") {
      throw new Error(
        `${source}: added_tokens[${index}] needs an integer "id" and a string "content"`,
      );
    }
    return {
      id: t.id as number,
      content: t.content,
      special: t.special === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      normalized: t.normalized === true,
    };
  });
}

/** Reads a JSON file; undefined when it does not exist, an error naming the file otherwise. */
async function readJsonIfPresent(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${path}: cannot read: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Whether `dir` holds a Hugging Face tokenizer.json rather than groundup's own small tokenizer
 * spec (`{"kind": "gpt2"}`). A large file is taken to be HF's without parsing it twice;
 * {@link loadHfTokenizer} checks it.
 */
export async function hasHfTokenizer(dir: string): Promise<boolean> {
  const path = join(dir, "tokenizer.json");
  try {
    if ((await Deno.stat(path)).size > 1 << 20) return true;
    const json = JSON.parse(await Deno.readTextFile(path));
    return json !== null && typeof json === "object" && "model" in json;
  } catch {
    return false;
  }
}

/**
 * The tokenizer of a Hugging Face model folder: `tokenizer.json` (required) and
 * `tokenizer_config.json`, with the end-of-sequence ids of `generation_config.json` and
 * `config.json` (`eos_token_id`, one id or a list) added to eos_token's.
 */
export async function loadHfTokenizer(dir: string): Promise<HfTokenizer> {
  const path = join(dir, "tokenizer.json");
  const json = await readJsonIfPresent(path);
  if (json === undefined) {
    throw new Error(`${path}: not found (a Hugging Face model folder needs its tokenizer.json)`);
  }
  const configPath = join(dir, "tokenizer_config.json");
  const config = await readJsonIfPresent(configPath) ?? {};
  if (typeof config !== "object" || Array.isArray(config)) {
    throw new Error(`${configPath}: expected a JSON object`);
  }
  const extraEosIds: number[] = [];
  for (const file of ["generation_config.json", "config.json"]) {
    const value = await readJsonIfPresent(join(dir, file));
    if (value) extraEosIds.push(...idList(value.eos_token_id, `${join(dir, file)}: eos_token_id`));
  }
  return HfTokenizer.fromJson(json, { config, extraEosIds, source: path });
}
