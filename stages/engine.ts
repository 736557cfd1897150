/**
 * The compute engine for stages that run the model: started once per process with the
 * pipeline's `backend`, and recorded in every manifest that used it.
 */
import { type EngineInfo, initEngine } from "../llm/engine/backend.ts";
import type { StageContext } from "../runner/stage.ts";

let started: { backend: string; info: Promise<EngineInfo> } | undefined;

/** Start (once) the backend the pipeline asks for and record it in this stage's manifest. */
export async function useEngine(ctx: StageContext<unknown>): Promise<EngineInfo> {
  const backend = ctx.pipeline.backend;
  if (started && started.backend !== backend) {
    throw new Error(
      `the engine already runs backend "${started.backend}" in this process; "${backend}" needs a new process`,
    );
  }
  started ??= {
    backend,
    info: initEngine({
      backend: backend as "auto" | "webgpu" | "cpu" | "wasm",
      log: (line) => ctx.log.info(line),
    }),
  };
  const info = await started.info;
  ctx.recordEnvironment({ engine: info });
  return info;
}
