/**
 * `deno task export`: a model folder → a GGUF file (llama.cpp, Ollama; with a Modelfile beside
 * it) or a Hugging Face folder (transformers, vLLM, LitGPT, torchtune).
 *
 *   deno task export --model DIR --format gguf --out model.gguf [--dtype f32|f16|q8_0]
 *   deno task export --model DIR --format hf --out hf-folder
 */
import { parseArgs } from "node:util";
import { initEngine } from "../llm/engine/backend.ts";
import {
  EXPORT_FORMATS,
  exportGgufWithModelfile,
  exportHf,
  GGUF_DTYPES,
  openExportSource,
} from "../llm/export/mod.ts";
import { runCommand, UsageError } from "./common.ts";

const USAGE =
  `usage: deno task export --model DIR --format gguf|hf --out PATH [--dtype f32|f16|q8_0]

  --model DIR    a model folder: a stage's model artifact (model.safetensors + config) or a
                 Hugging Face folder (config.json with model_type, weights, tokenizer.json)
  --format F     gguf: one llama.cpp file at PATH and an Ollama Modelfile beside it
                 hf:   a Hugging Face folder at PATH (must not exist, or be empty)
  --out PATH     where to write (an existing file or non-empty folder is refused)
  --dtype D      gguf only: ${GGUF_DTYPES.join(" | ")} (default f32)
  -h, --help     this text

Then: ollama create NAME -f Modelfile; llama-cli -m model.gguf; vllm serve PATH (docs/scale.md)
`;

async function main(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        format: { type: "string" },
        out: { type: "string" },
        dtype: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return void console.log(USAGE);
  if (!values.model) throw new UsageError("--model is required");
  if (!values.out) throw new UsageError("--out is required");
  const format = values.format;
  if (!(EXPORT_FORMATS as readonly string[]).includes(format ?? "")) {
    throw new UsageError(`--format must be one of ${EXPORT_FORMATS.join(", ")}, got ${format}`);
  }
  const dtype = values.dtype ?? "f32";
  if (!(GGUF_DTYPES as readonly string[]).includes(dtype)) {
    throw new UsageError(`--dtype must be one of ${GGUF_DTYPES.join(", ")}, got ${dtype}`);
  }
  if (format === "hf" && values.dtype !== undefined && dtype !== "f32") {
    throw new UsageError("--dtype applies to --format gguf only (an HF export is float32)");
  }
  await initEngine({ backend: "cpu" });
  const source = await openExportSource(values.model);
  try {
    if (format === "gguf") {
      const summary = await exportGgufWithModelfile(source, values.out, {
        dtype: dtype as typeof GGUF_DTYPES[number],
        onTensor: (index, name, count) => {
          if (index === count - 1 || index % 50 === 0) {
            console.error(`${index + 1}/${count} ${name}`);
          }
        },
      });
      console.log(
        `wrote ${summary.path} (${summary.architecture}, ${summary.dtype}, ${summary.tensors} ` +
          `tensors, ${(summary.bytes / 1e6).toFixed(1)} MB) and ${summary.modelfile}`,
      );
    } else {
      const result = await exportHf(source.model, values.out, { tokenizer: source.tokenizer });
      console.log(`wrote ${result.dir}: ${result.files.join(", ")}`);
    }
  } finally {
    source.model.dispose();
  }
}

if (import.meta.main) Deno.exit(await runCommand(USAGE, () => main(Deno.args)));
