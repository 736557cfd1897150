/**
 * groundup's command line: run a YAML pipeline.
 *
 *   deno task run pipelines/workshop.yaml [--plan] [--from S] [--until S] [--force S|all]
 *        [--config FILE]... [--set stage.key=value]... [--backend B] [--cache-dir DIR] [--mirror DIR]
 *        [--no-wait]
 *
 * Exit codes: 0 done, 1 a stage failed (or the cache folder is unusable), 2 a bad pipeline or
 * command line, 130 interrupted (Ctrl-C / SIGTERM).
 */
import { parseArgs } from "node:util";
import { DiskError } from "./util/disk.ts";
import { PipelineError } from "./runner/errors.ts";
import {
  installInterruptHandler,
  INTERRUPTED_EXIT_CODE,
  interruptedMessage,
} from "./runner/interrupt.ts";
import { BACKENDS, loadPipeline } from "./runner/pipeline.ts";
import { didYouMean } from "./runner/suggest.ts";
import { formatSummary, runPipeline } from "./runner/run.ts";
import { builtinStages } from "./stages/mod.ts";

const USAGE = `usage: deno task run <pipeline.yaml> [options]

  --plan              show what would run and what is cached, run nothing
  --from STAGE        re-run STAGE and everything downstream of it
  --until STAGE       run only STAGE and what it needs
  --force STAGE|all   re-run STAGE even if cached (repeatable)
  --config FILE       deep-merge a YAML overlay into the pipeline (repeatable);
                      a model config file (configs/models/*.yaml) replaces the model
  --set KEY=VALUE     set one value, e.g. --set dataloader.batch_size=4 (repeatable)
  --backend NAME      auto | webgpu | cpu | wasm (same as --set backend=NAME)
  --cache-dir DIR     artifact cache folder (default .groundup, or GROUNDUP_CACHE_DIR)
  --mirror DIR        local folder consulted before any download (or GROUNDUP_MIRROR)
  --no-wait           fail, instead of waiting, when another run computes a stage we need
  -h, --help          this text
`;

export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        plan: { type: "boolean", default: false },
        from: { type: "string" },
        until: { type: "string" },
        force: { type: "string", multiple: true },
        config: { type: "string", multiple: true },
        set: { type: "string", multiple: true },
        backend: { type: "string" },
        "cache-dir": { type: "string" },
        mirror: { type: "string" },
        "no-wait": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`error: expected one pipeline file, got ${positionals.length}\n\n${USAGE}`);
    return 2;
  }
  const sets = [...(values.set ?? [])];
  if (values.backend !== undefined) {
    if (!(BACKENDS as readonly string[]).includes(values.backend)) {
      console.error(
        `error: --backend ${values.backend}: expected one of ${BACKENDS.join(", ")}${
          didYouMean(values.backend, [...BACKENDS])
        }`,
      );
      return 2;
    }
    sets.push(`backend=${values.backend}`);
  }
  const cacheDir = values["cache-dir"] ?? Deno.env.get("GROUNDUP_CACHE_DIR") ?? ".groundup";

  // Ctrl-C or a scheduler's SIGTERM: the running stage checkpoints and stops; a second one quits.
  const interrupt = installInterruptHandler();
  try {
    const pipeline = await loadPipeline(positionals[0], builtinStages(), {
      overlays: values.config,
      sets,
      mirror: values.mirror,
    });
    const force = values.force?.includes("all") ? "all" : values.force;
    const report = await runPipeline(pipeline, {
      cacheDir,
      planOnly: values.plan,
      from: values.from,
      until: values.until,
      force,
      signal: interrupt.signal,
      noWait: values["no-wait"],
      onStageStart: interrupt.stageStarted,
    });
    if (!values.plan) console.error("\n" + formatSummary(report));
    if (report.interrupted) {
      console.error(`\n${interruptedMessage(report)}`);
      return INTERRUPTED_EXIT_CODE;
    }
    if (report.error) {
      console.error(`\nerror: ${report.error.message}`);
      return 1;
    }
    return 0;
  } catch (error) {
    if (error instanceof PipelineError) {
      console.error(`error in pipeline:\n${error.message}`);
      return 2;
    }
    if (error instanceof DiskError) {
      console.error(`error: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    interrupt.dispose();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
