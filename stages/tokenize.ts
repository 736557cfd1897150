/**
 * Stage `tokenize`: read a corpus (a named dataset, a local file or a URL with its sha256)
 * and turn it into token ids with the workshop's regex tokenizer or GPT-2's BPE.
 *
 * Artifact: corpus.txt (the text, for stages that split it), tokens.bin (+ .json header),
 * tokenizer.json (the spec to rebuild the tokenizer), vocab.json (simple only), stats.json.
 */
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { z } from "zod";
import { datasetNames, DATASETS } from "../datasets/catalog.ts";
import { writeFileAtomic } from "../runner/cache.ts";
import { defineStage, type PipelineSettings, type StageContext } from "../runner/stage.ts";
import { decodeUtf8Strict } from "../llm/data/utf8.ts";
import { writeTokenFile } from "../llm/data/token_file.ts";
import { buildVocabulary, splitSimple } from "../llm/tokenizer/simple.ts";
import { createTokenizer, type TokenizerSpec } from "../llm/tokenizer/mod.ts";
import { fetchForStage } from "./common.ts";

const CorpusSchema = z.union([
  z.string().min(1).superRefine((value, issue) => {
    if (value in DATASETS || existsSync(value)) return;
    issue.addIssue({
      code: "custom",
      message: `"${value}" is neither a named dataset (${
        datasetNames().join(", ")
      }) nor an existing file`,
    });
  }),
  z.strictObject({
    url: z.url(),
    sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "expected 64 hexadecimal digits"),
    /** File name under the mirror and download cache (default: the URL's last segment). */
    path: z.string().optional(),
  }),
], {
  // zod's own words for a value matching no form are "Invalid input": name the forms instead.
  error: () =>
    `expected a named dataset (${
      datasetNames().join(", ")
    }), the path of a local text file, or { url, sha256, path? }`,
});

export const TokenizeParams = z.strictObject({
  corpus: CorpusSchema,
  tokenizer: z.enum(["gpt2", "simple"]).default("gpt2"),
});
export type TokenizeParams = z.infer<typeof TokenizeParams>;

function isLocalPath(corpus: TokenizeParams["corpus"]): corpus is string {
  return typeof corpus === "string" && !(corpus in DATASETS);
}

function localPath(corpus: string, pipeline: PipelineSettings): string {
  return isAbsolute(corpus) ? corpus : join(pipeline.baseDir, corpus);
}

async function readCorpus(
  ctx: StageContext<TokenizeParams>,
): Promise<{ path: string; text: string }> {
  const { corpus } = ctx.params;
  let path: string;
  if (isLocalPath(corpus)) path = localPath(corpus, ctx.pipeline);
  else if (typeof corpus === "string") path = await fetchForStage(ctx, DATASETS[corpus]);
  else {
    const name = corpus.path ?? new URL(corpus.url).pathname.split("/").pop() ?? "corpus.txt";
    path = await fetchForStage(ctx, {
      url: corpus.url,
      sha256: corpus.sha256,
      path: `urls/${name}`,
    });
  }
  const text = decodeUtf8Strict(await Deno.readFile(path), path);
  if (text.length === 0) throw new Error(`${path}: the corpus is empty`);
  return { path, text };
}

export const tokenizeStage = defineStage({
  type: "tokenize",
  version: "1",
  description: "Read a corpus and convert it to token ids (regex vocabulary or GPT-2 BPE)",
  params: TokenizeParams,
  headline: ["characters", "tokens", "vocab_size"],
  localFiles: (params, pipeline) =>
    isLocalPath(params.corpus) ? [localPath(params.corpus, pipeline)] : [],
  async run(ctx) {
    const { text, path } = await readCorpus(ctx);
    let spec: TokenizerSpec;
    let uniqueTokens: number | undefined;
    if (ctx.params.tokenizer === "simple") {
      const pieces = splitSimple(text);
      const vocabulary = buildVocabulary(pieces);
      uniqueTokens = new Set(pieces).size;
      spec = { kind: "simple", vocabulary };
      await writeFileAtomic(join(ctx.outDir, "vocab.json"), JSON.stringify(vocabulary) + "\n");
    } else {
      spec = { kind: "gpt2", allowedSpecial: ["<|endoftext|>"] };
    }
    const tokenizer = createTokenizer(spec);
    const ids = tokenizer.encode(text);
    if (uniqueTokens === undefined) uniqueTokens = new Set(ids).size;

    await Deno.writeTextFile(join(ctx.outDir, "corpus.txt"), text);
    await writeTokenFile(join(ctx.outDir, "tokens.bin"), ids, tokenizer.vocabSize);
    // The simple tokenizer's vocabulary lives in vocab.json; the spec only names the kind.
    const specOnDisk = spec.kind === "simple" ? { kind: "simple" } : spec;
    await Deno.writeTextFile(join(ctx.outDir, "tokenizer.json"), JSON.stringify(specOnDisk) + "\n");
    const stats = {
      source: path,
      characters: text.length,
      tokens: ids.length,
      unique_tokens: uniqueTokens,
      vocab_size: tokenizer.vocabSize,
      tokenizer: tokenizer.name,
    };
    await Deno.writeTextFile(join(ctx.outDir, "stats.json"), JSON.stringify(stats, null, 2) + "\n");
    ctx.log.info(
      `${stats.characters} characters → ${stats.tokens} ${tokenizer.name} tokens (${uniqueTokens} unique, vocabulary ${stats.vocab_size})`,
    );
    const { source: _source, tokenizer: name, ...numbers } = stats;
    return { metrics: { ...numbers, tokenizer: name } };
  },
});

/**
 * The tokenizer described by `tokenizer.json` (+ `vocab.json` for the regex tokenizer) in an
 * artifact folder: a tokenize stage's, and every artifact that passes it on.
 */
export async function readTokenizer(dir: string) {
  const specPath = join(dir, "tokenizer.json");
  let spec: TokenizerSpec;
  try {
    spec = JSON.parse(await Deno.readTextFile(specPath));
    if (spec.kind === "simple") {
      spec.vocabulary = JSON.parse(await Deno.readTextFile(join(dir, "vocab.json")));
    }
  } catch (error) {
    throw new Error(`${specPath}: cannot read the tokenizer: ${(error as Error).message}`);
  }
  const kind: string = spec.kind;
  if (kind !== "gpt2" && kind !== "simple") {
    throw new Error(`${specPath}: unknown tokenizer kind ${JSON.stringify(kind)}`);
  }
  return { spec, tokenizer: createTokenizer(spec) };
}

/** Files that describe the tokenizer. */
const TOKENIZER_FILES = ["tokenizer.json", "vocab.json"];

/** Pass the tokenizer on: later stages (and `deno task generate`) decode with the same one. */
export async function copyTokenizerFiles(fromDir: string, toDir: string): Promise<void> {
  for (const file of TOKENIZER_FILES) {
    await Deno.copyFile(join(fromDir, file), join(toDir, file)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
}

/** Read back what a tokenize stage wrote. */
export async function openTokenizeArtifact(dir: string) {
  return {
    ...(await readTokenizer(dir)),
    text: await Deno.readTextFile(join(dir, "corpus.txt")),
  };
}
