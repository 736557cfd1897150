// Runs llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary) on a GGUF file for the export
// test (tests/llm/export/llama_cpp_test.ts): tokenizes texts and generates greedily from token
// ids, with llama.cpp's ten most likely next tokens and their probabilities at each step. Node, not Deno, loads the native addon; the test spawns this script.
//
//   node tools/llama-cpp/run.mjs request.json   →   JSON on stdout
//
// request: {"model": "x.gguf", "tokenize": ["text", ...],
//           "generate": [{"ids": [..], "maxTokens": 20}, ...], "threads": 2}
// answer:  {"tokens": [[ids], ...], "generated": [[ids], ...], "top": [[[[id, p] x10] per step]],
//           "architecture": "...", "bos": id|null, "eos": id|null}
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: request.model, gpuLayers: 0 });
const answer = {
  architecture: model.fileInfo.metadata.general.architecture,
  bos: model.tokens.bos ?? null,
  eos: model.tokens.eos ?? null,
  tokens: (request.tokenize ?? []).map((text) => [...model.tokenize(text, false)]),
  generated: [],
};
const context = await model.createContext({
  contextSize: request.contextSize ?? 256,
  threads: request.threads ?? 2,
  seed: 0,
  // Full-precision attention: llama.cpp's default F16 key/value cache rounds every cached key
  // and value (probabilities then differ from a float32 model's by ~1e-3).
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
answer.top = [];
for (const { ids, maxTokens } of request.generate ?? []) {
  const sequence = context.getSequence();
  const out = [];
  const top = [];
  // Greedy: llama.cpp's full next-token distribution (temperature 1, no truncation) at each
  // step; its argmax is fed back as the next token.
  const steps = sequence.evaluateWithMetadata(ids, { probabilities: true }, {
    temperature: 1,
    topK: 0,
    topP: 1,
    minP: 0,
  });
  let result = await steps.next();
  while (!result.done) {
    const ranked = [...result.value.probabilities].sort((a, b) => b[1] - a[1]);
    const next = ranked[0][0];
    out.push(next);
    top.push(ranked.slice(0, 10));
    if (out.length >= maxTokens) break;
    result = await steps.next(next);
  }
  await steps.return();
  answer.generated.push(out);
  answer.top.push(top);
  sequence.dispose();
}
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(answer) + "\n");
