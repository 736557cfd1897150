/**
 * A tokenizer as llama.cpp reads it from GGUF metadata (`tokenizer.ggml.*`): the token strings
 * by id, their types, the BPE merges (or SentencePiece scores), the pre-tokenizer's name (which
 * selects llama.cpp's built-in split regex), BOS/EOS ids and the chat template.
 *
 * Two sources:
 *   - GPT-2's BPE from js-tiktoken's ranks (no file needed): tokens are the ranks' bytes in
 *     GPT-2's byte-to-unicode alphabet, and the merge that makes each token is found by running
 *     BPE over its bytes with only the lower ranks: what is left is the two halves it merges.
 *   - A Hugging Face tokenizer.json (+ tokenizer_config.json): vocab, merges and added tokens as
 *     they are; the pre-tokenizer's regex is matched against the ones llama.cpp knows.
 */
import gpt2Ranks from "js-tiktoken/ranks/gpt2";
import { Gpt2Tokenizer } from "../tokenizer/gpt2.ts";
import { HfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { gguf, type GgufValue } from "../weights/gguf.ts";

/** llama.cpp's token types (llama_token_type). */
export const TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/** What `tokenizer.ggml.*` holds. */
export interface GgufVocabulary {
  /** `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style, scores). */
  model: "gpt2" | "llama";
  /** `tokenizer.ggml.pre`: llama.cpp's name of the pre-tokenizer ("gpt-2", "llama-bpe", ...). */
  pre?: string;
  /** Token strings by id, as the vocabulary stores them (byte-level or "▁" form). */
  tokens: string[];
  /** One of {@link TOKEN_TYPE} per token. */
  tokenTypes: number[];
  /** BPE merges "left right", highest priority first (model "gpt2"). */
  merges?: string[];
  /** Per-token scores (model "llama"). */
  scores?: number[];
  /** Beginning-of-sequence id. */
  bosId?: number;
  /** End-of-sequence id. */
  eosId?: number;
  /**
   * Other ids that end generation (Llama 3 Instruct's <|eot_id|>): not written (llama.cpp finds
   * end-of-generation tokens by their text), but the Modelfile's stop words come from them.
   */
  extraEosIds?: number[];
  /** The unknown token (SentencePiece-style vocabularies). */
  unknownId?: number;
  /** The padding token. */
  padId?: number;
  /** Whether llama.cpp adds BOS in front of every text (Llama 3.1/3.2, Gemma 3). */
  addBos: boolean;
  /** SentencePiece-style: prefix a space before the text (false for Gemma 3). */
  addSpacePrefix?: boolean;
  /** The Jinja chat template (`tokenizer.chat_template`). */
  chatTemplate?: string;
}

// ---------------------------------------------------------------------------------------------
// GPT-2

/** GPT-2's reversible byte → printable character map (`bytes_to_unicode` in its encoder.py). */
export function byteToUnicode(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = [];
  let next = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable(b) ? b : 256 + next++);
  }
  return table;
}

function base64Bytes(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/**
 * The merge that makes a token of rank `rank`: BPE over its bytes with only ranks below its own
 * (lowest rank first, leftmost on ties, as tiktoken merges) leaves exactly two parts.
 */
function lastMerge(bytes: Uint8Array, rank: number, ranks: Map<string, number>): [string, string] {
  let parts = [...bytes].map((b) => String.fromCharCode(b));
  while (parts.length > 2) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < rank && r < bestRank) {
        best = i;
        bestRank = r;
      }
    }
    if (best < 0) break;
    parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
  }
  if (parts.length !== 2) {
    throw new Error(`internal: GPT-2 rank ${rank} does not come from one merge (${parts.length})`);
  }
  return [parts[0], parts[1]];
}

let gpt2Cache: GgufVocabulary | undefined;

/**
 * GPT-2's tokenizer (50257 tokens: 256 bytes, 50000 merges, `<|endoftext|>`) from js-tiktoken's
 * ranks: the same tokens and merges as OpenAI's encoder.json and vocab.bpe.
 */
export function gpt2Vocabulary(): GgufVocabulary {
  if (gpt2Cache) return gpt2Cache;
  const toUnicode = byteToUnicode();
  const ranks = new Map<string, number>(); // token bytes as a latin-1 string → rank
  const byRank: Uint8Array[] = [];
  for (const line of gpt2Ranks.bpe_ranks.split("\n")) {
    if (!line) continue;
    const [, offset, ...encoded] = line.split(" ");
    encoded.forEach((token, i) => {
      const bytes = base64Bytes(token);
      const rank = Number(offset) + i;
      byRank[rank] = bytes;
      ranks.set(String.fromCharCode(...bytes), rank);
    });
  }
  const special = Object.entries(gpt2Ranks.special_tokens);
  // Every rank plus the special tokens (50257); the ranks' typing omits `explicit_n_vocab`.
  const size = Math.max(byRank.length, ...special.map(([, id]) => id + 1));
  const tokens: string[] = new Array(size);
  const tokenTypes: number[] = new Array(size).fill(TOKEN_TYPE.normal);
  const merges: string[] = [];
  const text = (latin1: string) => [...latin1].map((c) => toUnicode[c.charCodeAt(0)]).join("");
  byRank.forEach((bytes, rank) => {
    tokens[rank] = [...bytes].map((b) => toUnicode[b]).join("");
    if (bytes.length > 1) {
      const [left, right] = lastMerge(bytes, rank, ranks);
      merges.push(`${text(left)} ${text(right)}`);
    }
  });
  for (const [content, id] of special) {
    tokens[id] = content;
    tokenTypes[id] = TOKEN_TYPE.control;
  }
  const missing = tokens.findIndex((t) => t === undefined);
  if (missing >= 0) throw new Error(`internal: GPT-2's ranks have no token ${missing}`);
  const endOfText = gpt2Ranks.special_tokens["<|endoftext|>"];
  gpt2Cache = {
    model: "gpt2",
    pre: "gpt-2",
    tokens,
    tokenTypes,
    merges,
    bosId: endOfText,
    eosId: endOfText,
    addBos: false,
  };
  return gpt2Cache;
}

// ---------------------------------------------------------------------------------------------
// Hugging Face tokenizer.json

/**
 * The pre-tokenizer regexes of tokenizer.json files and llama.cpp's names for them (see
 * llama-vocab.cpp: each name selects a built-in regex equal to the file's).
 */
const KNOWN_SPLIT_PATTERNS: [string, string][] = [
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "llama-bpe",
  ],
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "qwen2",
  ],
];

/** A parsed JSON object (tokenizer.json, tokenizer_config.json). */
type Json = Record<string, unknown>;

/** Every pre-tokenizer step of tokenizer.json, Sequences flattened. */
function preTokenizerSteps(pre: unknown): Json[] {
  if (pre === null || typeof pre !== "object") return [];
  const step = pre as Json;
  if (step.type === "Sequence" && Array.isArray(step.pretokenizers)) {
    return step.pretokenizers.flatMap(preTokenizerSteps);
  }
  return [step];
}

/** llama.cpp's name for a tokenizer.json's pre-tokenizer, or an error naming what it is. */
function preTokenizerName(json: Json, source: string): string {
  const steps = preTokenizerSteps(json.pre_tokenizer);
  const kinds = steps.map((s) => s.type);
  for (const step of steps) {
    if (step.type !== "Split") continue;
    const pattern = (step.pattern as Json | undefined)?.Regex;
    const known = KNOWN_SPLIT_PATTERNS.find(([regex]) => regex === pattern);
    if (known) return known[1];
    throw new Error(
      `${source}: the pre-tokenizer's split regex ${JSON.stringify(pattern)} is not one ` +
        `llama.cpp knows by name here (known: ${
          KNOWN_SPLIT_PATTERNS.map(([, n]) => n).join(", ")
        })`,
    );
  }
  // SmolLM2: single digits split off, then GPT-2's byte-level regex.
  if (
    kinds.length === 2 && kinds[0] === "Digits" && steps[0].individual_digits === true &&
    kinds[1] === "ByteLevel"
  ) {
    return "smollm";
  }
  if (kinds.length === 1 && kinds[0] === "ByteLevel" && steps[0].use_regex !== false) {
    return "gpt-2";
  }
  throw new Error(
    `${source}: a pre-tokenizer of ${JSON.stringify(kinds)} has no llama.cpp equivalent here ` +
      `(known: GPT-2's ByteLevel, SmolLM2's Digits + ByteLevel, and the Llama 3 / Qwen2 regexes)`,
  );
}

/** The merges of tokenizer.json ("a b" strings, or [a, b] pairs in newer files). */
function readMerges(model: Json, source: string): string[] {
  const merges = model.merges;
  if (!Array.isArray(merges)) throw new Error(`${source}: model.merges is not a list`);
  return merges.map((m, i) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2 && m.every((p) => typeof p === "string")) {
      return `${m[0]} ${m[1]}`;
    }
    throw new Error(`${source}: model.merges[${i}] is neither "a b" nor ["a", "b"]`);
  });
}

/** tokenizer_config.json's chat template: a string, or the "default" of a list of named ones. */
function chatTemplateOf(config: Json): string | undefined {
  const template = config.chat_template;
  if (typeof template === "string") return template;
  if (Array.isArray(template)) {
    const named = template.find((t) => (t as Json)?.name === "default") as Json | undefined;
    return typeof named?.template === "string" ? named.template : undefined;
  }
  return undefined;
}

/** What an HF tokenizer adds to {@link hfVocabulary}'s file contents. */
export interface HfVocabularyIds {
  /** Beginning-of-sequence id. */
  bosId?: number;
  /** Every end-of-sequence id. */
  eosIds: ReadonlySet<number>;
  /** The main end-of-sequence id (eos_token). */
  endOfTextId?: number;
  /** Ids the tokenizer puts before every text (BOS for Llama 3.1/3.2, Gemma 3). */
  prefixIds: readonly number[];
}

/**
 * The GGUF vocabulary of a Hugging Face tokenizer.json, with `vocabSize` tokens (the model's
 * embedding rows: ids past the tokenizer's are `[PAD{id}]`, unused, as llama.cpp's converter
 * pads them). Byte-level BPE becomes model "gpt2"; BPE with byte fallback (Gemma 3's
 * SentencePiece-derived file) becomes model "llama" with scores from the merge order.
 */
export function hfVocabulary(
  json: Record<string, unknown>,
  config: Record<string, unknown>,
  ids: HfVocabularyIds,
  vocabSize: number,
  source: string,
): GgufVocabulary {
  const model = json.model as Json | undefined;
  if (!model || model.type !== "BPE" || typeof model.vocab !== "object") {
    throw new Error(
      `${source}: model type ${JSON.stringify(model?.type)} cannot be written to GGUF here ` +
        `(only BPE tokenizers)`,
    );
  }
  const tokens: string[] = new Array(vocabSize);
  const tokenTypes: number[] = new Array(vocabSize).fill(TOKEN_TYPE.normal);
  const place = (token: string, id: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new Error(
        `${source}: token ${JSON.stringify(token)} has id ${id}, outside the model's ` +
          `${vocabSize} embedding rows`,
      );
    }
    tokens[id] = token;
  };
  for (const [token, id] of Object.entries(model.vocab as Record<string, number>)) place(token, id);
  for (const added of (json.added_tokens ?? []) as Json[]) {
    const id = added.id as number;
    place(added.content as string, id);
    tokenTypes[id] = added.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      tokenTypes[id] = TOKEN_TYPE.unused;
    }
  }
  const merges = readMerges(model, source);
  const eos = ids.endOfTextId ?? [...ids.eosIds][0];
  const vocabulary: GgufVocabulary = {
    model: "gpt2",
    tokens,
    tokenTypes,
    bosId: ids.bosId,
    eosId: eos,
    extraEosIds: [...ids.eosIds].filter((id) => id !== eos),
    addBos: ids.bosId !== undefined && ids.prefixIds.includes(ids.bosId),
    chatTemplate: chatTemplateOf(config),
  };
  if (model.byte_fallback === true) {
    // SentencePiece style: llama.cpp merges the pair whose result scores highest, so a token's
    // score is minus the rank of the merge that makes it; <0xNN> pieces are the byte fallback.
    const scores = new Array<number>(vocabSize).fill(0);
    const index = new Map(tokens.map((t, i) => [t, i]));
    merges.forEach((merge, rank) => {
      const id = index.get(merge.replace(" ", ""));
      if (id !== undefined && scores[id] === 0) scores[id] = -(rank + 1);
    });
    tokens.forEach((t, i) => {
      if (/^<0x[0-9A-F]{2}>$/.test(t)) tokenTypes[i] = TOKEN_TYPE.byte;
    });
    if (typeof model.unk_token === "string" && index.has(model.unk_token)) {
      vocabulary.unknownId = index.get(model.unk_token);
      tokenTypes[vocabulary.unknownId!] = TOKEN_TYPE.unknown;
    }
    vocabulary.model = "llama";
    vocabulary.scores = scores;
    vocabulary.addSpacePrefix = false;
    return vocabulary;
  }
  vocabulary.pre = preTokenizerName(json, source);
  vocabulary.merges = merges;
  return vocabulary;
}

/** The `tokenizer.*` key/value pairs of a vocabulary. */
export function vocabularyMetadata(v: GgufVocabulary): [string, GgufValue][] {
  const out: [string, GgufValue][] = [["tokenizer.ggml.model", gguf.str(v.model)]];
  if (v.pre) out.push(["tokenizer.ggml.pre", gguf.str(v.pre)]);
  out.push(["tokenizer.ggml.tokens", gguf.arr("string", v.tokens)]);
  if (v.scores) out.push(["tokenizer.ggml.scores", gguf.arr("float32", v.scores)]);
  out.push(["tokenizer.ggml.token_type", gguf.arr("int32", v.tokenTypes)]);
  if (v.merges) out.push(["tokenizer.ggml.merges", gguf.arr("string", v.merges)]);
  const id = (key: string, value: number | undefined) => {
    if (value !== undefined) out.push([`tokenizer.ggml.${key}`, gguf.u32(value)]);
  };
  id("bos_token_id", v.bosId);
  id("eos_token_id", v.eosId);
  id("unknown_token_id", v.unknownId);
  id("padding_token_id", v.padId);
  out.push(["tokenizer.ggml.add_bos_token", gguf.bool(v.addBos)]);
  out.push(["tokenizer.ggml.add_eos_token", gguf.bool(false)]);
  if (v.addSpacePrefix !== undefined) {
    out.push(["tokenizer.ggml.add_space_prefix", gguf.bool(v.addSpacePrefix)]);
  }
  if (v.chatTemplate) out.push(["tokenizer.chat_template", gguf.str(v.chatTemplate)]);
  return out;
}

/** Pads a vocabulary to `size` tokens with unused `[PAD{id}]` entries (a model with spare rows). */
function padded(v: GgufVocabulary, size: number, what: string): GgufVocabulary {
  if (v.tokens.length > size) {
    throw new Error(
      `${what} has ${v.tokens.length} tokens but the model's embedding has only ${size} rows`,
    );
  }
  if (v.tokens.length === size) return v;
  const extra = Array.from({ length: size - v.tokens.length }, (_, i) => v.tokens.length + i);
  return {
    ...v,
    tokens: [...v.tokens, ...extra.map((id) => `[PAD${id}]`)],
    tokenTypes: [...v.tokenTypes, ...extra.map(() => TOKEN_TYPE.unused)],
    scores: v.scores && [...v.scores, ...extra.map(() => 0)],
  };
}

/**
 * The GGUF vocabulary of one of our tokenizers for a model with `vocabSize` embedding rows:
 * GPT-2's from js-tiktoken, a Hugging Face tokenizer's from the tokenizer.json it was loaded
 * from. The regex tokenizer of the book's chapter 2 has no llama.cpp equivalent.
 */
export async function ggufVocabularyOf(
  tokenizer: Tokenizer,
  vocabSize: number,
): Promise<GgufVocabulary> {
  if (tokenizer instanceof Gpt2Tokenizer) {
    return padded(gpt2Vocabulary(), vocabSize, "GPT-2's tokenizer");
  }
  if (tokenizer instanceof HfTokenizer) {
    const source = tokenizer.source;
    let json: Json;
    try {
      json = JSON.parse(await Deno.readTextFile(source));
    } catch (error) {
      throw new Error(
        `GGUF export: cannot read the tokenizer's file ${source}: ${(error as Error).message}`,
      );
    }
    return hfVocabulary(json, tokenizer.config as Json, tokenizer, vocabSize, source);
  }
  throw new Error(
    `GGUF export: the "${tokenizer.name}" tokenizer has no llama.cpp equivalent (GPT-2's BPE ` +
      `and Hugging Face BPE tokenizers do)`,
  );
}
