/**
 * The `quantize` parameter of every stage that opens a model for inference (generate,
 * responses, evaluate, judge with `api: local`): how the weights are held while the stage runs
 * (llm/model/precision.ts). It is optional rather than defaulted, so a pipeline that does not
 * set it keeps the cache keys it had before the option existed; set, it is part of the key
 * (int8 and bf16 give other numbers than fp32), except `none`, which keys as if absent
 * (`QUANTIZE_NEUTRAL`). Fine-tuning stages train in fp32 and have no such key.
 */
import { z } from "zod";
import { type Quantization, QUANTIZATIONS } from "../llm/model/precision.ts";

/** The schema of `quantize:` (absent: `none`). */
export const quantizeParam = z.enum(QUANTIZATIONS, {
  error: (issue) =>
    `expected one of ${QUANTIZATIONS.join(", ")} (got ${JSON.stringify(issue.input)})`,
}).optional().describe(
  "How the weights are held for inference: `none` (default, fp32), `bf16` (2 bytes a " +
    "parameter) or `int8` (GGUF's Q8_0: blocks of 32 with an fp16 scale, 34 bytes per 32 " +
    "parameters); norms and biases stay fp32. Part of the cache key. See docs/scale.md.",
);

/** The quantization a stage's parameters ask for. */
export const quantizationOf = (params: { quantize?: Quantization }): Quantization =>
  params.quantize ?? "none";

/** A stage's `neutralParams` entry: `quantize: none` is the same stage as no `quantize`. */
export const QUANTIZE_NEUTRAL = { quantize: "none" } as const;
