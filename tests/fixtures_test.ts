import assert from "node:assert/strict";
import { sharedFixture } from "./fixtures.ts";

Deno.test("shared fixtures are reachable", async () => {
  const stat = await Deno.stat(sharedFixture("workshop", "the-verdict.txt"));
  assert.equal(stat.size, 20479);
});
