/**
 * Stage `load-openai-weights` (workshop part 5): fetch OpenAI's pretrained GPT-2 and convert it
 * into our own model files, so later stages and `deno task generate` load it without knowing
 * where it came from.
 *
 * Sources:
 *   openai  OpenAI's TensorFlow checkpoint (the seven release files), read by our own
 *           TensorBundle reader: no TensorFlow needed;
 *   hf      Hugging Face's `model.safetensors` + `config.json` of the same weights;
 *   local   a folder in either layout (`path:`).
 * The size follows the pipeline's `model:` (emb_dim and n_layers), so
 * `--config configs/models/gpt2-large.yaml` switches the download; `size:` names it directly.
 *
 * Artifact: model.safetensors (the book's state_dict names, F32; the output head is tied to the
 * token embedding and stored under both names so the book's PyTorch GPTModel loads it as is),
 * gpt_config.json (context 1024, qkv_bias true), tokenizer_spec.json (GPT-2 BPE), source.json.
 * * The finding, opening, checking and streaming conversion live in llm/model/gpt2_import.ts.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { hfGpt2Files, openaiGpt2Files } from "../datasets/gpt2.ts";
import {
  defineStage,
  type PipelineSettings,
  type StageContext,
  type StageDefinition,
} from "../runner/stage.ts";
import { readJsonObject, resolvePath, writeFileAtomic } from "../util/files.ts";
import { countParameters } from "../llm/model/config.ts";
import {
  checkEncoderMatchesTokenizer,
  type CheckpointFiles,
  convertCheckpointToModelFolder,
  findLocalCheckpoint,
  openCheckpoint,
} from "../llm/model/gpt2_import.ts";
import type { Gpt2WeightPlan } from "../llm/model/gpt2_mapping.ts";
import { GPT2_SIZE_INFO, GPT2_SIZES, type Gpt2Size, gpt2SizeFor } from "../llm/model/gpt2_sizes.ts";
import { fetchForStage } from "./common.ts";

// ---------------------------------------------------------------------------------------------
// parameters

/** Only the model's width and depth matter here; its other keys (context, dropout) do not. */
const InheritedModel = z.object({
  emb_dim: z.number().int().positive().optional(),
  n_layers: z.number().int().positive().optional(),
});

const ParamsInput = z.strictObject({
  source: z.enum(["openai", "hf", "local"]).default("openai").describe(
    "`openai` (the TensorFlow checkpoint OpenAI published), `hf` (Hugging Face's " +
      "`model.safetensors`), `local` (+ `path`: a folder in either layout).",
  ),
  size: z.enum(GPT2_SIZES).optional().describe(
    "Which GPT-2; default: the size matching the pipeline's `model` (so `--config " +
      "configs/models/gpt2-large.yaml` switches the download), else 124M.",
  ),
  path: z.string().min(1).optional().describe(
    "For `source: local`: a folder with a TensorFlow checkpoint or a Hugging Face safetensors " +
      "file.",
  ),
  drop_rate: z.number().min(0).lt(1).default(0).describe(
    "Dropout written into gpt_config.json for later training; the weights do not carry one.",
  ),
  model: InheritedModel.optional().describe(
    "Inherited from the pipeline's `model:`; only `emb_dim` and `n_layers` are read, to pick " +
      "the size.",
  ),
});

/** The GPT-2 size the inherited model has, if it is one. */
function sizeOfModel(model: z.infer<typeof InheritedModel> | undefined): Gpt2Size | undefined {
  if (model?.emb_dim === undefined || model.n_layers === undefined) return undefined;
  return gpt2SizeFor({ emb_dim: model.emb_dim, n_layers: model.n_layers });
}

function describeDims(model: z.infer<typeof InheritedModel>): string {
  return `emb_dim ${model.emb_dim}, n_layers ${model.n_layers}`;
}

/**
 * Parameters after resolution: the size is decided here (from `size` or the model), so the
 * cache key depends only on what decides the output, and `--set`/`--config` mistakes are
 * reported with their location before anything runs.
 */
export const LoadOpenaiWeightsParams = ParamsInput.superRefine((p, issues) => {
  if (p.source === "local") {
    if (!p.path) {
      issues.addIssue({
        code: "custom",
        // Reported at `source` (the runner words a missing key's own issue generically).
        path: ["source"],
        message: "source: local needs `path:` (a folder with model.ckpt.* or model.safetensors)",
      });
    }
    return;
  }
  if (p.path) {
    issues.addIssue({
      code: "custom",
      path: ["path"],
      message: `\`path\` is only read with source: local (source is ${p.source})`,
    });
  }
  const fromModel = sizeOfModel(p.model);
  if (p.model?.emb_dim !== undefined && !fromModel && !p.size) {
    issues.addIssue({
      code: "custom",
      path: ["model"],
      message: `the model (${describeDims(p.model)}) is not a GPT-2 size; set \`size:\` (${
        GPT2_SIZES.join(", ")
      }) or use source: local`,
    });
  } else if (p.size && p.model?.emb_dim !== undefined && fromModel !== p.size) {
    issues.addIssue({
      code: "custom",
      path: ["size"],
      message:
        `size ${p.size} contradicts the pipeline's model (${describeDims(p.model)}${
          fromModel ? ` = GPT-2 ${fromModel}` : ""
        }); drop \`size\` to follow the model, or switch both with ` +
        `\`--config configs/models/${GPT2_SIZE_INFO[p.size].configName}.yaml\``,
    });
  }
}).transform((p) => {
  if (p.source === "local") return { source: p.source, path: p.path!, drop_rate: p.drop_rate };
  const fromModel = sizeOfModel(p.model);
  return { source: p.source, size: p.size ?? fromModel ?? "124M", drop_rate: p.drop_rate };
});
export type LoadOpenaiWeightsParams = z.infer<typeof LoadOpenaiWeightsParams>;

// ---------------------------------------------------------------------------------------------
// locating the checkpoint

/**
 * Local files that decide the output. For a TensorFlow checkpoint the index suffices: it holds
 * a CRC32C of every tensor, so it changes whenever the data does, and hashing it is instant
 * where hashing a multi-GB data file on every plan is not.
 */
function localFilesToHash(params: LoadOpenaiWeightsParams, pipeline: PipelineSettings): string[] {
  if (params.source !== "local") return [];
  const folder = resolvePath(params.path!, pipeline.baseDir);
  let found: CheckpointFiles;
  try {
    found = findLocalCheckpoint(folder);
  } catch {
    // The planner reports an unreadable path with its location; a readable folder without a
    // checkpoint is reported by `run` with what was expected.
    return existsSync(folder) ? [] : [folder];
  }
  return found.layout === "openai"
    ? [found.weights, ...(found.hparams ? [found.hparams] : [])]
    : Object.values(found.files);
}

async function fetchOpenai(
  ctx: StageContext<LoadOpenaiWeightsParams>,
  size: Gpt2Size,
): Promise<CheckpointFiles> {
  // All seven release files, as the book's download script fetches them, so a cached or
  // mirrored copy is the complete release; `checkpoint` and `model.ckpt.meta` are not read.
  const remote = openaiGpt2Files(size);
  const paths: Record<string, string> = {};
  for (const [name, file] of Object.entries(remote)) paths[name] = await fetchForStage(ctx, file);
  // The reader finds the data shard beside the index. A mirror may hold one of them and the
  // download cache the other, so bring them together under one prefix when they are apart.
  let index = paths["model.ckpt.index"];
  const data = paths["model.ckpt.data-00000-of-00001"];
  if (dirname(index) !== dirname(data)) {
    const together = join(ctx.progressDir, "checkpoint");
    await Deno.mkdir(together, { recursive: true });
    for (const path of [index, data]) {
      const link = join(together, basename(path));
      await Deno.remove(link).catch(() => {});
      await Deno.symlink(path, link);
    }
    index = join(together, "model.ckpt.index");
  }
  return {
    layout: "openai",
    weights: index,
    hparams: paths["hparams.json"],
    encoder: paths["encoder.json"],
    files: paths,
  };
}

async function fetchHf(
  ctx: StageContext<LoadOpenaiWeightsParams>,
  size: Gpt2Size,
): Promise<CheckpointFiles> {
  const remote = hfGpt2Files(size);
  const config = await fetchForStage(ctx, remote["config.json"]);
  const weights = await fetchForStage(ctx, remote["model.safetensors"]);
  return { layout: "hf", weights, hparams: config, files: { config, weights } };
}

// ---------------------------------------------------------------------------------------------
// the stage

/**
 * The `load-openai-weights` stage (book ch05): converts OpenAI's (or Hugging Face's) GPT-2 weights
 * into a model folder.
 */
export const loadOpenaiWeightsStage: StageDefinition = defineStage({
  type: "load-openai-weights",
  version: "1",
  description:
    "Fetch OpenAI's GPT-2 (TensorFlow checkpoint or HF safetensors), convert to our files",
  params: LoadOpenaiWeightsParams,
  inherits: ["model"],
  localFiles: localFilesToHash,
  headline: ["size", "parameters", "layout"],
  outputs: ["model"],
  async run(ctx) {
    const p = ctx.params;
    let found: CheckpointFiles;
    if (p.source === "openai") found = await fetchOpenai(ctx, p.size!);
    else if (p.source === "hf") found = await fetchHf(ctx, p.size!);
    else found = findLocalCheckpoint(resolvePath(p.path!, ctx.pipeline.baseDir));

    if (found.encoder) await checkEncoderMatchesTokenizer(found.encoder);
    const hparams = found.hparams ? await readJsonObject(found.hparams) : undefined;
    const source = await openCheckpoint(found);
    let plan: Gpt2WeightPlan;
    try {
      plan = await convertCheckpointToModelFolder(source, ctx.outDir, {
        hparams,
        dropRate: p.drop_rate,
        expectSize: p.size,
        onProgress: (done, total) => {
          if (done === 0) ctx.progress.start("converting", total, "B");
          else ctx.progress.update(done);
        },
      });
    } finally {
      source.close();
    }
    ctx.progress.finish();

    const size = p.size ?? gpt2SizeFor(plan.config) ?? "custom";
    const parameters = countParameters(plan.config, { tiedHead: true });
    await writeFileAtomic(
      join(ctx.outDir, "source.json"),
      JSON.stringify({ source: p.source, size, layout: plan.layout, files: found.files }, null, 2) +
        "\n",
    );
    ctx.log.info(
      `GPT-2 ${size} from ${p.source} (${plan.layout} layout): ${
        parameters.toLocaleString("en-US")
      } ` +
        `parameters, context ${plan.config.context_length}, tied output head`,
    );
    return { metrics: { size, layout: plan.layout, source: p.source, parameters } };
  },
});
