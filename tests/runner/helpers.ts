/** Small stages and pipeline files for runner tests. */
import { join } from "node:path";
import { z } from "zod";
import { defineStage, StageRegistry } from "../../runner/stage.ts";

export const quietOutput = { write() {}, isTerminal: false };

/** Counts runs per stage so tests can tell "ran" from "cached". */
export function countingRegistry() {
  const runs: string[] = [];
  const source = defineStage({
    type: "source",
    version: "1",
    description: "writes a number",
    params: z.strictObject({
      value: z.number().int().default(1),
      file: z.string().optional(),
      seed: z.number().int().default(0),
    }),
    inherits: ["seed"],
    localFiles: (p) => (p.file ? [p.file] : []),
    async run(ctx) {
      runs.push(ctx.name);
      await Deno.writeTextFile(join(ctx.outDir, "value.txt"), String(ctx.params.value));
      return { metrics: { value: ctx.params.value } };
    },
  });
  const double = defineStage({
    type: "double",
    version: "1",
    description: "doubles its input",
    params: z.strictObject({
      crash: z.boolean().default(false),
      nested: z.strictObject({ a: z.number().default(1) }).default({ a: 1 }),
    }),
    requires: ["source"],
    async run(ctx) {
      runs.push(ctx.name);
      const upstream = Object.values(ctx.inputs)[0];
      const value = Number(await Deno.readTextFile(join(upstream.dir, "value.txt")));
      await Deno.writeTextFile(join(ctx.outDir, "value.txt"), String(value * 2));
      // A checkpoint written before the crash must survive it.
      await Deno.writeTextFile(join(ctx.progressDir, "checkpoint.txt"), "step 1");
      if (ctx.params.crash) throw new Error("boom");
      return { metrics: { value: value * 2 } };
    },
  });
  // Takes the pipeline's `model:` (whatever it holds: the runner does not look inside).
  const modelled = defineStage({
    type: "modelled",
    version: "1",
    description: "records the model it inherits",
    params: z.strictObject({ model: z.record(z.string(), z.unknown()).optional() }),
    inherits: ["model"],
    async run(ctx) {
      runs.push(ctx.name);
      await Deno.writeTextFile(join(ctx.outDir, "model.json"), JSON.stringify(ctx.params.model));
      return { metrics: {} };
    },
  });
  const registry = new StageRegistry().register(source).register(double).register(modelled);
  return { registry, runs };
}

export async function writePipeline(dir: string, text: string, name = "pipeline.yaml") {
  const path = join(dir, name);
  await Deno.writeTextFile(path, text);
  return path;
}

export const CHAIN = `name: chain
seed: 7
stages:
  a:
    uses: source
    value: 3
  b:
    uses: double
    needs: a
  c:
    uses: double
    needs: [a]
`;
