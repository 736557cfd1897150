// Times llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary) on a GGUF file for
// bench/llama_cpp.ts: prefill of a long prompt, then greedy decoding after a short one.
// Node, not Deno, loads the native addon; the bench spawns this script once per round.
//
//   node tools/llama-cpp/bench.mjs request.json   →   JSON on stdout
//
// request: {"model": "x.gguf", "threads": 2, "contextSize": 1024,
//           "prefill": [ids], "prompt": [ids], "newTokens": 200}
// answer:  {"load_s", "prefill_s", "prefill_tokens", "first_token_s", "decode_s",
//           "decoded_tokens", "tokens": [ids]}
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const seconds = (start) => (performance.now() - start) / 1000;

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
let start = performance.now();
const model = await llama.loadModel({ modelPath: request.model, gpuLayers: 0 });
const loadSeconds = seconds(start);
const context = await model.createContext({
  contextSize: request.contextSize ?? 1024,
  batchSize: Math.max(512, request.prefill.length),
  threads: request.threads ?? 2,
  seed: 0,
  // Float32 keys/values and no flash attention: the arithmetic of a float32 model (llama.cpp's
  // default F16 cache would round every cached key and value).
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
const sequence = context.getSequence();

// Prefill: the long prompt in one batch, no token generated.
start = performance.now();
await sequence.evaluateWithoutGeneratingNewTokens(request.prefill);
const prefillSeconds = seconds(start);
await sequence.clearHistory();

// Decode: greedy (temperature 0) after the short prompt. The first token also pays the
// prompt's prefill, so decode speed is timed from the first token to the last.
const tokens = [];
start = performance.now();
let firstTokenSeconds = 0;
for await (const token of sequence.evaluate(request.prompt, { temperature: 0 })) {
  tokens.push(token);
  if (tokens.length === 1) {
    firstTokenSeconds = seconds(start);
    start = performance.now();
  }
  if (tokens.length >= request.newTokens) break;
}
const decodeSeconds = seconds(start);

sequence.dispose();
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(
  JSON.stringify({
    load_s: loadSeconds,
    prefill_s: prefillSeconds,
    prefill_tokens: request.prefill.length,
    first_token_s: firstTokenSeconds,
    decode_s: decodeSeconds,
    decoded_tokens: tokens.length - 1,
    tokens,
  }) + "\n",
);
