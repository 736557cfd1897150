/**
 * `deno task ui`: the web page for runs in the artifact cache (server/ui_api.ts).
 *
 *   deno task ui [--host 127.0.0.1] [--port 8077] [--cache-dir DIR] [--backend B] [--quantize Q]
 */
import { parseArgs } from "node:util";
import { BACKEND_CHOICES, type BackendChoice } from "../llm/engine/backend.ts";
import { parseQuantization, type Quantization, QUANTIZATIONS } from "../llm/model/precision.ts";
import { UiApi } from "../server/ui_api.ts";
import { ChatService } from "../server/ui_chat.ts";
import { address, listenProblem } from "./listen.ts";

const USAGE = `usage: deno task ui [options]

  --host HOST         address to listen on (default 127.0.0.1: this machine only)
  --port N            port (default 8077; 0 picks a free one)
  --cache-dir DIR     artifact cache folder (default .groundup, or GROUNDUP_CACHE_DIR)
  --backend NAME      engine for the chat playground: ${BACKEND_CHOICES.join(" | ")} (default auto)
  --quantize Q        how the chat playground holds a model's weights: ${QUANTIZATIONS.join(" | ")}
                      (default none: fp32)
  -h, --help          this text
`;

const LOOPBACK = ["127.0.0.1", "localhost", "::1"];

export function main(args: string[]): number | Deno.HttpServer {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "8077" },
        "cache-dir": { type: "string" },
        backend: { type: "string", default: "auto" },
        quantize: { type: "string", default: "none" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`error: --port must be an integer from 0 to 65535, got ${values.port}`);
    return 2;
  }
  if (!BACKEND_CHOICES.includes(values.backend as BackendChoice)) {
    console.error(`error: --backend must be one of ${BACKEND_CHOICES.join(", ")}`);
    return 2;
  }
  let quantize: Quantization;
  try {
    quantize = parseQuantization(values.quantize, "--quantize");
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return 2;
  }
  const cacheDir = values["cache-dir"] ?? Deno.env.get("GROUNDUP_CACHE_DIR") ?? ".groundup";
  const loopback = LOOPBACK.includes(values.host);
  if (!loopback) {
    console.error(
      `warning: listening on ${values.host}: anyone who can reach it can read the cache's ` +
        `runs and use the chat`,
    );
  }
  const api = new UiApi({
    cacheDir,
    chat: new ChatService(values.backend as BackendChoice, quantize),
    // On loopback, only requests addressed to a loopback name (no DNS rebinding).
    allowedHosts: loopback ? LOOPBACK : undefined,
  });
  try {
    return Deno.serve({
      hostname: values.host,
      port,
      onListen: ({ hostname, port }) => {
        console.error(
          `groundup ui: http://${address(hostname, port)}/  (cache ${cacheDir}; Ctrl-C stops)`,
        );
      },
    }, api.handler);
  } catch (error) {
    console.error(`error: ${listenProblem(error, values.host, port)}`);
    return 1;
  }
}

if (import.meta.main) {
  const result = main(Deno.args);
  if (typeof result === "number") Deno.exit(result);
}
