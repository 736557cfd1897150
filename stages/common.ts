/** Small pieces every stage uses: finding its inputs and fetching public data. */
import { fetchFile, type FetchOptions, type RemoteFile } from "../datasets/download.ts";
import type { Artifact, StageContext } from "../runner/stage.ts";
import { hasModel, MODEL_FILES } from "../llm/artifacts/model.ts";

/** What a model artifact holds, for messages. */
const MODEL_KIND = `${MODEL_FILES.join(" + ")}, or a Hugging Face model folder`;

/** The single upstream artifact of a given stage type (the pipeline check guarantees one). */
export function inputOfType(ctx: StageContext<unknown>, type: string): Artifact {
  const matches = Object.values(ctx.inputs).filter((a) => a.type === type);
  if (matches.length === 0) throw new Error(`stage "${ctx.name}" needs a "${type}" stage`);
  if (matches.length > 1) {
    throw new Error(
      `stage "${ctx.name}" needs exactly one "${type}" stage, got ${
        matches.map((m) => m.stage).join(", ")
      }`,
    );
  }
  return matches[0];
}

/** Fetch a public file through the mirror, the download cache or the network. */
export function fetchForStage(
  ctx: StageContext<unknown>,
  file: RemoteFile,
  extra: FetchOptions = {},
) {
  return fetchFile(file, {
    mirror: ctx.pipeline.mirror,
    progress: ctx.progress,
    log: ctx.log,
    signal: ctx.signal,
    ...extra,
  });
}

/**
 * The upstream artifact that holds a model (ours: model.safetensors + gpt_config.json; or an open
 * model in the Hub's layout, as load-hf-model leaves it): the one named by `from`, else the only
 * one among the stage's needs.
 */
export function modelInput(ctx: StageContext<unknown>, from?: string): Artifact {
  const needs = Object.keys(ctx.inputs).join(", ") || "none";
  if (from !== undefined) {
    const named = ctx.inputs[from];
    if (!named) {
      throw new Error(`${ctx.name}: from: "${from}" is not among this stage's needs (${needs})`);
    }
    if (!hasModel(named.dir)) {
      throw new Error(
        `${ctx.name}: stage "${from}" produced no model (${MODEL_KIND})`,
      );
    }
    return named;
  }
  const models = Object.values(ctx.inputs).filter((a) => hasModel(a.dir));
  if (models.length === 1) return models[0];
  if (models.length === 0) {
    throw new Error(
      `stage "${ctx.name}" needs a stage that produced a model (${MODEL_KIND}), e.g. ` +
        `\`needs: load-openai-weights\` or \`needs: load-hf-model\`; needs: ${needs}`,
    );
  }
  throw new Error(
    `stage "${ctx.name}" has several models upstream (${
      models.map((m) => m.stage).join(", ")
    }): say which with \`from:\``,
  );
}

/** The checkpoint cadence settings of the training stages (`checkpoint_minutes`, `checkpoint_every`). */
export interface CheckpointCadence {
  checkpoint_minutes: number;
  checkpoint_every?: number;
}

/**
 * When a training stage writes its next checkpoint: every `checkpoint_every` steps if set, and when
 * `checkpoint_minutes` have passed since the last one (`saved()` restarts that clock).
 */
export function checkpointSchedule(p: CheckpointCadence): {
  due: (position: { step: number }) => boolean;
  saved: () => void;
} {
  let last = performance.now();
  return {
    due: (position) =>
      (p.checkpoint_every !== undefined && position.step % p.checkpoint_every === 0) ||
      performance.now() - last >= p.checkpoint_minutes * 60_000,
    saved: () => void (last = performance.now()),
  };
}

/**
 * The parameters that identify a training run: how often checkpoints are written does not change
 * the run, so those settings are left out (a checkpoint stays valid when they change).
 */
export function runParams<P extends CheckpointCadence>(
  params: P,
): Omit<P, "checkpoint_minutes" | "checkpoint_every"> {
  const { checkpoint_minutes: _minutes, checkpoint_every: _every, ...rest } = params;
  return rest;
}
