import assert from "node:assert/strict";
import { createProgress, formatDuration } from "../../util/progress.ts";

function recorder(isTerminal: boolean) {
  const chunks: string[] = [];
  return { out: { write: (t: string) => void chunks.push(t), isTerminal }, chunks };
}

Deno.test("on a terminal the bar is redrawn in place with rate, ETA and values", () => {
  let now = 0;
  const { out, chunks } = recorder(true);
  const progress = createProgress("train", { out, now: () => now });
  progress.start("steps", 10, "steps");
  now = 2000;
  progress.update(4, { loss: 3.14159 });
  progress.finish();
  const [first] = chunks;
  assert.ok(first.startsWith("\r\x1b[2K[train] steps █"), JSON.stringify(first));
  assert.ok(
    first.endsWith("40%  4 steps/10 steps  2.00 steps/s  elapsed 2.0s  ETA 3.0s  loss 3.1416"),
    JSON.stringify(first),
  );
  assert.ok(chunks.at(-1)!.endsWith("\n"));
});

Deno.test("off a terminal, plain lines at most every interval, and the last one", () => {
  let now = 0;
  const { out, chunks } = recorder(false);
  const progress = createProgress("dl", { out, now: () => now, plainInterval: 10 });
  progress.start("file.bin", 1000, "B");
  for (let i = 1; i <= 100; i++) {
    now = i * 500; // 50 s in all, an update every half second
    progress.update(i * 10);
  }
  progress.finish();
  assert.ok(chunks.every((c) => !c.includes("\r") && c.endsWith("\n")));
  assert.ok(chunks.length >= 5 && chunks.length <= 7, `${chunks.length} lines`);
  assert.ok(chunks.at(-1)!.startsWith("[dl] file.bin 100%  1000 B/1000 B"), chunks.at(-1));
});

Deno.test("durations read naturally", () => {
  assert.equal(formatDuration(5.25), "5.3s");
  assert.equal(formatDuration(75), "1m15s");
  assert.equal(formatDuration(3 * 3600 + 120), "3h02m");
  assert.equal(formatDuration(Infinity), "?");
});

Deno.test("a resumed run's rate and ETA count only the steps done since it started", () => {
  let now = 0;
  const { out, chunks } = recorder(false);
  const progress = createProgress("pretrain", { out, now: () => now, plainInterval: 0 });
  progress.start("training", 72, "steps", 35); // 35 steps came from the checkpoint
  progress.update(35);
  now = 4000;
  progress.update(37);
  const last = chunks.at(-1)!;
  assert.ok(last.includes("37 steps/72 steps  0.50 steps/s"), last);
  assert.ok(last.includes("ETA 1m10s"), last);
  assert.ok(chunks[0].includes("0.00 steps/s"), chunks[0]);
});
