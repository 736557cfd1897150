/** Small pieces every stage uses: finding its inputs and fetching public data. */
import { fetchFile, type FetchOptions, type RemoteFile } from "../datasets/download.ts";
import type { Artifact, StageContext } from "../runner/stage.ts";

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
