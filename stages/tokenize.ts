/**
 * Stage `tokenize`: read a corpus (a named dataset, a local file or a URL with its sha256)
 * and turn it into token ids with the workshop's regex tokenizer or GPT-2's BPE.
 *
 * Artifact: corpus.txt (the text, for stages that split it), tokens.bin (+ .json header),
 * tokenizer_spec.json (the spec to rebuild the tokenizer), vocab.json (simple only), stats.json.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { datasetNames, DATASETS } from "../datasets/catalog.ts";
import { resolvePath, writeFileAtomic } from "../util/files.ts";
import {
  defineStage,
  type PipelineSettings,
  type StageContext,
  type StageDefinition,
} from "../runner/stage.ts";
import { decodeUtf8Strict } from "../llm/data/utf8.ts";
import { writeTokenFile } from "../llm/data/token_file.ts";
import { buildVocabulary, splitSimple } from "../llm/tokenizer/simple.ts";
import { createTokenizer, type TokenizerSpec } from "../llm/tokenizer/mod.ts";
import { writeTokenizerSpec } from "../llm/tokenizer/files.ts";
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
  corpus: CorpusSchema.describe(
    "A named dataset (`the-verdict`, `instruction-data`), a local file path, or " +
      "`{url, sha256, path?}` (`path`: the file name under the mirror and download cache, " +
      "default the URL's last segment).",
  ),
  tokenizer: z.enum(["gpt2", "simple"]).default("gpt2").describe(
    "`gpt2` (BPE via js-tiktoken, `<|endoftext|>` allowed) or `simple` (the workshop's regex " +
      "tokenizer with a vocabulary built from the corpus plus `<|endoftext|>` and `<|unk|>`).",
  ),
});
export type TokenizeParams = z.infer<typeof TokenizeParams>;

function isLocalPath(corpus: TokenizeParams["corpus"]): corpus is string {
  return typeof corpus === "string" && !(corpus in DATASETS);
}

function localPath(corpus: string, pipeline: PipelineSettings): string {
  return resolvePath(corpus, pipeline.baseDir);
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

/**
 * The `tokenize` stage (book ch02): reads the corpus, tokenizes it and writes the token ids with
 * the tokenizer's description.
 */
export const tokenizeStage: StageDefinition = defineStage({
  type: "tokenize",
  version: "1",
  description: "Read a corpus and convert it to token ids (regex vocabulary or GPT-2 BPE)",
  params: TokenizeParams,
  outputs: ["tokens"],
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
    await writeTokenizerSpec(ctx.outDir, spec);
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

/** The reader of this stage's artifact (its kind's module). */
export { openTokenizeArtifact, type TokenizeArtifact } from "../llm/artifacts/tokens.ts";
