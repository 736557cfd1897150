import assert from "node:assert/strict";
import { join } from "node:path";
import { gatherReport, readRewardMarginCurve } from "../../../llm/report/gather.ts";
import { renderReport } from "../../../llm/report/html.ts";
import { withTempDir } from "../../fixtures.ts";

const row = (step: number, margin: number) => ({
  step,
  epoch: step / 10,
  tokens_seen: step * 640,
  train_loss: 0.69 - step / 100,
  val_loss: 0.69 - step / 200,
  train_chosen_reward: margin / 2,
  train_rejected_reward: -margin / 2,
  train_reward_margin: margin,
  val_chosen_reward: 0,
  val_rejected_reward: -margin / 3,
  val_reward_margin: margin / 3,
});

Deno.test("report: a DPO history gives the loss curve and the reward-margin curve; others only the loss", async () => {
  await withTempDir(async (dir) => {
    const dpo = join(dir, "dpo"), ft = join(dir, "finetune");
    await Deno.mkdir(dpo);
    await Deno.mkdir(ft);
    const evaluations = [row(0, 0.014), row(5, 0.4), row(10, 1.45)];
    await Deno.writeTextFile(join(dpo, "history.json"), JSON.stringify({ evaluations }));
    await Deno.writeTextFile(
      join(ft, "history.json"),
      JSON.stringify({
        evaluations: evaluations.map(({ step, epoch, tokens_seen, train_loss, val_loss }) => ({
          step,
          epoch,
          tokens_seen,
          train_loss,
          val_loss,
        })),
      }),
    );
    const margins = await readRewardMarginCurve({ stage: "dpo", dir: dpo });
    assert.deepEqual(margins?.curve.train, [0.014, 0.4, 1.45]);
    assert.deepEqual(margins?.curve.val, [0.014 / 3, 0.4 / 3, 1.45 / 3]);
    assert.equal(margins?.curve.label, "reward margins");
    assert.equal(await readRewardMarginCurve({ stage: "finetune", dir: ft }), undefined);

    const data = await gatherReport([{ stage: "finetune", dir: ft }, {
      stage: "dpo",
      dir: dpo,
    }], "t");
    assert.deepEqual(data.lossCurves.map((c) => c.name), ["finetune", "dpo", "dpo reward margins"]);
    const html = renderReport(data);
    assert.match(html, /Training reward margins/);
    assert.match(html, /dpo reward margins: final train 1\.450, val 0\.483/);
  });
});
