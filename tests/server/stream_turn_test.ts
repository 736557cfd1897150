/**
 * generateText's `streamTurnMs`: how long a streaming generation may run before the event loop
 * (and with it the server's I/O) gets a turn. A timer set when the first piece arrives fires
 * while the generation goes on when turns are taken after every token (0 ms), and only after
 * the last token when the interval is longer than the whole generation.
 */
import assert from "node:assert/strict";
import { generateText } from "../../server/generation.ts";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { serveTiny, writeTinyModelFolder } from "./helpers.ts";

await useCpuBackend();

/** Pieces streamed before a timer set at the first piece ran, and the pieces in all. */
async function piecesBeforeTimer(served: Awaited<ReturnType<typeof serveTiny>>, turnMs: number) {
  let pieces = 0, beforeTimer: number | undefined;
  await generateText(served, {
    ids: served.tokenizer.encode("Every effort moves you"),
    maxTokens: 24,
    temperature: 0,
    seed: 1,
    stop: [],
  }, {
    streamTurnMs: turnMs,
    onText: () => {
      if (++pieces === 1) setTimeout(() => (beforeTimer = pieces), 0);
    },
  });
  // Let the timer run if the generation never gave it a turn.
  await new Promise((resolve) => setTimeout(resolve, 0));
  return { beforeTimer: beforeTimer!, pieces };
}

Deno.test("generateText: streamTurnMs sets how often a streaming generation lets timers and I/O run", async () => {
  await withTempDir(async (dir) => {
    await writeTinyModelFolder(dir);
    const served = await serveTiny(dir);
    try {
      const everyToken = await piecesBeforeTimer(served, 0);
      assert.ok(everyToken.pieces > 4, `only ${everyToken.pieces} pieces`);
      assert.ok(
        everyToken.beforeTimer < everyToken.pieces,
        `a turn after every token: the timer ran after piece ${everyToken.beforeTimer} of ${everyToken.pieces}`,
      );
      const never = await piecesBeforeTimer(served, 60_000);
      assert.equal(never.beforeTimer, never.pieces, "no turn until the generation ended");
    } finally {
      await served.close();
    }
  });
});
