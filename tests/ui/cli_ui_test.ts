/** `deno task ui`: flags, loopback by default, the cache folder it serves. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { main } from "../../cli/ui.ts";

Deno.test("ui cli: serves the cache it is given on loopback; bad flags exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "runs"));
    await Deno.writeTextFile(
      join(dir, "runs", "2026-01-01T00-00-00-000Z-demo.json"),
      JSON.stringify({ pipeline: "demo", status: "ok", steps: [] }),
    );
    const server = main(["--port", "0", "--cache-dir", dir, "--backend", "cpu"]);
    assert.ok(typeof server !== "number");
    try {
      const addr = server.addr as Deno.NetAddr;
      assert.equal(addr.hostname, "127.0.0.1");
      const runs = await (await fetch(`http://127.0.0.1:${addr.port}/api/ui/runs`)).json();
      assert.deepEqual(runs.runs.map((r: { pipeline: string }) => r.pipeline), ["demo"]);
    } finally {
      await server.shutdown();
    }
    assert.equal(main(["--port", "http"]), 2);
    assert.equal(main(["--backend", "tpu"]), 2);
    assert.equal(main(["--bogus"]), 2);
  });
});

Deno.test("ui cli: a busy port fails at once naming host:port, without a stack trace", () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const lines: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => void lines.push(args.join(" "));
  try {
    assert.equal(main(["--port", String(port), "--backend", "cpu"]), 1);
  } finally {
    console.error = error;
    busy.close();
  }
  assert.deepEqual(lines, [
    `error: 127.0.0.1:${port} is already in use (another server listens there): choose ` +
    "another --port, or --port 0 for any free one",
  ]);
});
