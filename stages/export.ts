/**
 * Stage `export`: an upstream model in a format other tools run. `format: gguf` writes
 * model.gguf (llama.cpp, Ollama: F32, F16 or Q8_0 weights, the tokenizer and chat template in its
 * metadata) and an Ollama `Modelfile`; `format: hf` writes a Hugging Face folder (config.json,
 * model.safetensors with HF names, tokenizer files) for transformers, vLLM, LitGPT, torchtune.
 * See docs/scale.md for what to do with them.
 */
import { join } from "node:path";
import { z } from "zod";
import {
  EXPORT_FORMATS,
  exportGgufWithModelfile,
  exportHf,
  GGUF_DTYPES,
  ggufArchitecture,
  openExportSource,
} from "../llm/export/mod.ts";
import { GGUF_FILE } from "../llm/artifacts/gguf.ts";
import { hasModel } from "../llm/artifacts/model.ts";
import { defineStage, type StageDefinition, type StageResult } from "../runner/stage.ts";
import { useEngine } from "./engine.ts";

export const ExportParams = z.strictObject({
  format: z.enum(EXPORT_FORMATS).describe(
    "`gguf`: one llama.cpp file (model.gguf) and an Ollama Modelfile; `hf`: a Hugging Face " +
      "folder (config.json, model.safetensors with HF names, tokenizer files).",
  ),
  dtype: z.enum(GGUF_DTYPES).default("f32").describe(
    "GGUF only: storage of the weight matrices (norms and biases stay f32).",
  ),
  from: z.string().optional().describe(
    "Which upstream stage's model to export when `needs` lists several.",
  ),
}).refine((p) => p.format === "gguf" || p.dtype === "f32", {
  message: "dtype applies to format: gguf only (an HF export is float32)",
  path: ["dtype"],
});
export type ExportParams = z.infer<typeof ExportParams>;

/** The GGUF file the stage writes. */
export { GGUF_FILE };

/** The `export` stage. */
export const exportStage: StageDefinition = defineStage({
  type: "export",
  version: "1",
  description: "Export an upstream model as GGUF (llama.cpp, Ollama) or a Hugging Face folder",
  params: ExportParams,
  // gguf: model.gguf + Modelfile; hf: a Hugging Face model folder.
  outputs: ["gguf", "model"],
  headline: ["format", "architecture", "megabytes"],
  async run(ctx): Promise<StageResult> {
    const p = ctx.params;
    const candidates = Object.values(ctx.inputs).filter((a) =>
      p.from === undefined ? hasModel(a.dir) : a.stage === p.from
    );
    if (candidates.length !== 1 || !hasModel(candidates[0].dir)) {
      throw new Error(
        `stage "${ctx.name}" exports one model: ${
          candidates.length === 0
            ? `no stage among its needs (${Object.keys(ctx.inputs).join(", ") || "none"}) ` +
              `produced one${p.from ? ` named "${p.from}"` : ""}`
            : `several do (${candidates.map((a) => a.stage).join(", ")}): say which with \`from:\``
        }`,
      );
    }
    await useEngine(ctx);
    const source = await openExportSource(candidates[0].dir);
    try {
      if (p.format === "gguf") {
        // Refuse an architecture llama.cpp does not know before anything is written.
        const architecture = ggufArchitecture(source.model.config);
        const summary = await exportGgufWithModelfile(source, join(ctx.outDir, GGUF_FILE), {
          dtype: p.dtype,
        });
        ctx.log.info(
          `${GGUF_FILE}: ${architecture}, ${p.dtype}, ${summary.tensors} tensors, ` +
            `${(summary.bytes / 1e6).toFixed(1)} MB; Modelfile: ollama create NAME -f Modelfile`,
        );
        return {
          metrics: {
            format: "gguf",
            architecture,
            dtype: p.dtype,
            megabytes: Number((summary.bytes / 1e6).toFixed(2)),
          },
        };
      }
      // The artifact is the HF folder itself: the stage's (empty) output folder is filled.
      const result = await exportHf(source.model, ctx.outDir, { tokenizer: source.tokenizer });
      let bytes = 0;
      for (const file of result.files) bytes += (await Deno.stat(join(ctx.outDir, file))).size;
      ctx.log.info(`HF folder: ${result.files.join(", ")}`);
      return {
        metrics: {
          format: "hf",
          architecture: source.model.config.family ?? "gpt2",
          megabytes: Number((bytes / 1e6).toFixed(2)),
        },
      };
    } finally {
      source.model.dispose();
    }
  },
});
