/**
 * What `quantize` costs, on real data (issue 19, item 2): a tiny GPT pretrained here on "The
 * Verdict" as the smoke pipeline pretrains it, and the same shapes with random weights, each
 * opened in fp32, bf16 and int8: validation loss, 200 greedy tokens, MMLU philosophy. The
 * tolerances are the measured values with a margin (the 124M numbers: bench/RESULTS.md,
 * `deno task bench quantize-quality`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPipeline } from "../../../runner/pipeline.ts";
import { runPipeline } from "../../../runner/run.ts";
import { builtinStages, openDataloaderArtifact } from "../../../stages/mod.ts";
import { initEngine } from "../../../llm/engine/backend.ts";
import { readMmluCsvFile } from "../../../llm/eval/mmlu/data.ts";
import {
  greedyAgreement,
  measureQuality,
  type QualityDelta,
  qualityDelta,
  type QualityProbe,
} from "../../../llm/eval/quantize_quality.ts";
import { loadModelConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { saveModel } from "../../../llm/model/weights_io.ts";
import { SHARED_FIXTURES, sharedFixture, withTempDir } from "../../fixtures.ts";
import { quietOutput, writePipeline } from "../../runner/helpers.ts";

Deno.test("greedyAgreement: the share before the first difference, and position by position", () => {
  assert.deepEqual(greedyAgreement([1, 2, 3, 4], [1, 2, 3, 4]), {
    prefix: 1,
    overall: 1,
    firstDifference: null,
  });
  assert.deepEqual(greedyAgreement([1, 2, 3, 4], [1, 9, 3, 4]), {
    prefix: 0.25,
    overall: 0.75,
    firstDifference: 1,
  });
  // A shorter continuation (it stopped) differs where it has no token.
  assert.deepEqual(greedyAgreement([1, 2, 3, 4], [1, 2]), {
    prefix: 0.5,
    overall: 0.5,
    firstDifference: 2,
  });
});

/** The smoke pipeline's pretraining (pipelines/smoke.yaml), on the real story. */
const PRETRAIN = `name: quality
seed: 123
backend: cpu
model: ${join(Deno.cwd(), "configs/models/tiny.yaml")}
stages:
  tokenize:
    corpus: the-verdict
    tokenizer: gpt2
  dataloader:
    needs: tokenize
    train_ratio: 0.9
    batch_size: 4
    max_length: 32
    stride: 32
  pretrain:
    needs: dataloader
    model:
      drop_rate: 0.0
    epochs: 2
    lr: 1.0e-3
    eval_freq: 10
    eval_iter: 2
    sample_tokens: 10
`;

/**
 * The floors: measured (2026-12-04, the reference rounding of llm/model/precision.ts; int8
 * rounding the Q8_0 products' inputs too, as llama.cpp does) with a margin. Measured: Δ val loss
 * within 3.8e-4 everywhere; next-token agreement 1 (pretrained) and 0.996 / 0.980 (random,
 * bf16 / int8); 200 greedy tokens all identical on the pretrained model, while on the random
 * one (nearly flat logits) the first difference came at token 102 (bf16) and 17 (int8); no
 * MMLU answer flipped.
 */
const FLOORS = {
  pretrained: { nextToken: 0.98, greedyPrefix: { bf16: 0.5, int8: 0.5 } },
  random: { nextToken: 0.95, greedyPrefix: { bf16: 0.25, int8: 0.04 } },
};

async function compare(dir: string, probe: QualityProbe): Promise<QualityDelta[]> {
  const fp32 = await measureQuality(dir, "none", probe);
  const deltas = [];
  for (const quantize of ["bf16", "int8"] as const) {
    deltas.push(qualityDelta(fp32, await measureQuality(dir, quantize, probe)));
  }
  console.log(JSON.stringify({ fp32: { valLoss: fp32.valLoss, mmlu: fp32.mmlu?.acc }, deltas }));
  return deltas;
}

Deno.test("quantize quality: bf16 and int8 against fp32 on a tiny GPT pretrained on The Verdict and on a random one", async () => {
  await withTempDir(async (dir) => {
    Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);
    await initEngine({ backend: "cpu", log: () => {} });
    const file = await writePipeline(dir, PRETRAIN);
    const report = await runPipeline(await loadPipeline(file, builtinStages()), {
      cacheDir: join(dir, "cache"),
      out: quietOutput,
    });
    assert.ok(report.ok, report.error?.message);
    const data = await openDataloaderArtifact(report.artifacts.dataloader.dir);
    const probe: QualityProbe = {
      valBatches: () => data.val.batches(0),
      prompt: data.tokenizer.encode("Every effort moves you"),
      newTokens: 200,
      mmlu: {
        task: "mmlu_philosophy",
        load: (subject, split) => readMmluCsvFile(sharedFixture("mmlu"), subject, split),
        limit: 20,
      },
    };

    const randomDir = join(dir, "random");
    const random = new GPTModel(await loadModelConfig("tiny"), { seed: 123 });
    await saveModel(randomDir, random);
    random.dispose();

    for (
      const [name, modelDir] of [
        ["pretrained", report.artifacts.pretrain.dir],
        ["random", randomDir],
      ] as const
    ) {
      for (const delta of await compare(modelDir, probe)) {
        const what = `${name} ${delta.quantize}`;
        assert.ok(Math.abs(delta.valLossDelta) < 0.01, `${what}: Δ val loss ${delta.valLossDelta}`);
        const floor = FLOORS[name];
        assert.ok(
          delta.nextTokenAgreement >= floor.nextToken,
          `${what}: next-token agreement ${delta.nextTokenAgreement}`,
        );
        const greedyFloor = floor.greedyPrefix[delta.quantize as "bf16" | "int8"];
        assert.ok(
          delta.greedy.prefix >= greedyFloor,
          `${what}: greedy ${JSON.stringify(delta.greedy)}`,
        );
        assert.ok(delta.mmluFlipped! <= 2, `${what}: ${delta.mmluFlipped} MMLU answers flipped`);
      }
    }
  });
});
