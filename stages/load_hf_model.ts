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
 *
 * Artifact: Hugging Face's files under their own names (config.json, generation_config.json,
 * tokenizer.json, tokenizer_config.json, the optional special_tokens_map.json and
 * chat_template.jinja, model.safetensors or model.safetensors.index.json + its shards), plus our
 * own source.json: repository, revision asked for, commit resolved, and every file with its
 * size and sha256.
 *
 * Before the weights are fetched, their size at fp32 (what our engine loads) is checked against
 * the memory available; a model that cannot fit is refused with both sizes (`allow_large: true`
 * fetches it anyway).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import {
  defineStage,
  type PipelineSettings,
  type StageContext,
  type StageDefinition,
} from "../runner/stage.ts";
import { didYouMean } from "../runner/suggest.ts";
import { readJsonObject, resolvePath, writeFileAtomic } from "../llm/files.ts";
import { ensureMemory, formatBytes } from "../llm/disk.ts";
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

// ---------------------------------------------------------------------------------------------
// parameters

const ParamsInput = z.strictObject({
  source: z.enum(["hub", "local"]).default("hub").describe(
    "`hub` (download `repo` at `revision`, through the mirror folder and the download cache) " +
      "or `local` (+ `path`: a folder in the Hub's layout).",
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
    "Fetch a model even when its fp32 size exceeds the memory available now.",
  ),
});

/**
 * Parameters after resolution: a catalog id becomes its repository and revision here, so the
 * cache key depends on what decides the output (repository + revision, or the local files).
 */
export const LoadHfModelParams = ParamsInput.superRefine((p, issues) => {
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
export type LoadHfModelParams = z.infer<typeof LoadHfModelParams>;

// ---------------------------------------------------------------------------------------------
// the folder

/** What `checkHfModelFolder` found. */
export interface HfModelFolderInfo {
  /** config.json's `model_type` (e.g. "qwen3", "llama", "gemma3_text"). */
  modelType: string;
  /** config.json as parsed. */
  config: Record<string, unknown>;
}

/**
 * Checks that `dir` is a model folder in the Hub's layout: config.json parses and names its
 * `model_type`. This is the one place the stage validates what it wrote; the family loader
 * (`loadHfModel` of llm/families/load.ts) is meant to be called from here once it exists, so a
 * folder that cannot load never lands in the cache.
 */
export async function checkHfModelFolder(dir: string): Promise<HfModelFolderInfo> {
  const path = join(dir, "config.json");
  const config = await readJsonObject(path);
  if (typeof config.model_type !== "string" || config.model_type === "") {
    throw new Error(
      `${path}: no "model_type": not a Hugging Face model config (expected e.g. "model_type": ` +
        `"qwen3")`,
    );
  }
  return { modelType: config.model_type, config };
}

/**
 * The files of a local folder that decide the output (hashed into the cache key): the files the
 * stage copies. An unreadable folder is returned as is, so the planner reports it.
 */
function localFilesToHash(params: LoadHfModelParams, pipeline: PipelineSettings): string[] {
  if (params.source !== "local") return [];
  const folder = resolvePath(params.path!, pipeline.baseDir);
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

/** Refuses weights whose fp32 size exceeds the memory available, unless allowed. */
function memoryCheck(what: string, allowLarge: boolean) {
  return (size: HfSizeEstimate) => {
    if (allowLarge) return;
    ensureMemory(
      size.fp32Bytes,
      `${what} at fp32 (${formatBytes(size.storedBytes)} of ${size.dtype} weights); ` +
        "set allow_large: true to fetch it anyway",
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
  /** Where the files came from: the Hub, the mirror folder, or a local folder. */
  source: "hub" | "mirror" | "local";
  /** `<org>/<name>` (absent for a local folder). */
  repo?: string;
  /** The revision asked for. */
  revision?: string;
  /** The commit the files come from (null when unknown: a mirror copy). */
  commit?: string | null;
  /** The local folder (source local). */
  path?: string;
  /** Every file of the artifact that came from the source. */
  files: { name: string; size: number; sha256: string; lfs?: boolean }[];
}

/** The file our stage writes beside Hugging Face's files. */
export const HF_SOURCE_FILE = "source.json";

async function fetchFiles(ctx: StageContext<LoadHfModelParams>): Promise<HfModelFiles> {
  const p = ctx.params;
  if (p.source === "local") {
    const folder = resolvePath(p.path!, ctx.pipeline.baseDir);
    const local = await readLocalHfFolder(folder, {
      checkSize: memoryCheck(`the model in ${folder}`, p.allow_large),
    });
    return { repo: "", revision: "", commit: null, source: "local", ...local };
  }
  return await downloadHfModel(p.repo!, p.revision!, {
    mirror: ctx.pipeline.mirror,
    progress: ctx.progress,
    log: ctx.log,
    signal: ctx.signal,
    checkSize: memoryCheck(p.repo!, p.allow_large),
  });
}

// ---------------------------------------------------------------------------------------------
// the stage

/** The `load-hf-model` stage: an open model from the Hugging Face Hub or a local HF folder. */
export const loadHfModelStage: StageDefinition = defineStage({
  type: "load-hf-model",
  version: "1",
  description: "Fetch an open model from the Hugging Face Hub (or a local HF folder), checked",
  params: LoadHfModelParams,
  producesModel: true,
  localFiles: localFilesToHash,
  // Whether a large model may be fetched does not change what is fetched.
  cadenceParams: ["allow_large"],
  headline: ["repo", "model_type", "fp32_bytes"],
  async run(ctx) {
    const p = ctx.params;
    const fetched = await fetchFiles(ctx);
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
        : { path: resolvePath(p.path!, ctx.pipeline.baseDir) }),
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
    const name = p.source === "hub" ? p.repo! : record.path!;
    ctx.log.info(
      `${name}${fetched.commit ? ` at ${fetched.commit}` : ""} (${fetched.source}): ` +
        `model_type ${info.modelType}, ${fetched.files.length} files, weights ${
          formatBytes(fetched.size.storedBytes)
        } ${fetched.size.dtype} (${formatBytes(fetched.size.fp32Bytes)} at fp32)`,
    );
    return {
      metrics: {
        repo: p.repo ?? "local",
        ...(fetched.commit ? { commit: fetched.commit } : {}),
        source: fetched.source,
        model_type: info.modelType,
        files: fetched.files.length,
        stored_bytes: fetched.size.storedBytes,
        fp32_bytes: fetched.size.fp32Bytes,
      },
    };
  },
});
