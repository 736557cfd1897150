import assert from "node:assert/strict";
import { join } from "node:path";
import { DownloadError, fetchFile, type RemoteFile } from "../../datasets/download.ts";
import { sha256Hex } from "../../util/hash.ts";
import { createProgress } from "../../util/progress.ts";
import { withTempDir } from "../fixtures.ts";

/** Deterministic test content, large enough to arrive in several chunks. */
const CONTENT = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
const SHA = sha256Hex(CONTENT);

interface ServerScript {
  /** Answer the first N requests with this status. */
  failFirst?: { count: number; status: number };
  /** On the first full (non-Range) request, send this many bytes then break the connection. */
  breakAfter?: number;
  rangeSupport?: boolean;
}

/** A local HTTP server on the loopback address; records the Range headers it saw. */
function serve(script: ServerScript = {}) {
  const ranges: (string | null)[] = [];
  let requests = 0, broke = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    requests++;
    const range = request.headers.get("range");
    ranges.push(range);
    if (script.failFirst && requests <= script.failFirst.count) {
      return new Response("try later", { status: script.failFirst.status });
    }
    if (range && script.rangeSupport !== false) {
      const start = Number(/bytes=(\d+)-/.exec(range)![1]);
      if (start >= CONTENT.length) return new Response(null, { status: 416 });
      return new Response(CONTENT.slice(start), {
        status: 206,
        headers: { "content-range": `bytes ${start}-${CONTENT.length - 1}/${CONTENT.length}` },
      });
    }
    if (script.breakAfter !== undefined && !broke) {
      broke = true;
      const head = CONTENT.slice(0, script.breakAfter);
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(head);
          setTimeout(() => controller.error(new Error("connection reset")), 10);
        },
      });
      return new Response(body, { headers: { "content-length": String(CONTENT.length) } });
    }
    return new Response(CONTENT, { headers: { "content-length": String(CONTENT.length) } });
  });
  const url = `http://127.0.0.1:${server.addr.port}/data/file.bin`;
  return { server, url, ranges, requests: () => requests };
}

const quiet = { write() {}, isTerminal: false };
const fast = { retryDelayMs: 5, progress: createProgress("test", { out: quiet }) };

Deno.test("downloads into the cache, verifies sha256, then serves from the cache", async () => {
  const { server, url, requests } = serve();
  await withTempDir(async (dir) => {
    const file: RemoteFile = { url, path: "x/file.bin", sha256: SHA, size: CONTENT.length };
    const path = await fetchFile(file, { cacheDir: dir, ...fast });
    assert.equal(path, join(dir, "x/file.bin"));
    assert.deepEqual(await Deno.readFile(path), CONTENT);
    await fetchFile(file, { cacheDir: dir, ...fast });
    assert.equal(requests(), 1, "the second fetch must come from the cache");
  });
  await server.shutdown();
});

Deno.test("a broken connection is resumed with an HTTP Range request", async () => {
  const { server, url, ranges } = serve({ breakAfter: 100_000 });
  await withTempDir(async (dir) => {
    const file: RemoteFile = { url, path: "file.bin", sha256: SHA, size: CONTENT.length };
    const path = await fetchFile(file, { cacheDir: dir, ...fast });
    assert.deepEqual(await Deno.readFile(path), CONTENT);
    assert.equal(ranges[0], null);
    assert.match(ranges[1] ?? "", /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(ranges[1]!)![0]) > 0, "resumed from a non-zero offset");
  });
  await server.shutdown();
});

Deno.test("a partial file left by an earlier run is resumed, not restarted", async () => {
  const { server, url, ranges } = serve();
  await withTempDir(async (dir) => {
    await Deno.writeFile(join(dir, "file.bin.part"), CONTENT.slice(0, 123_456));
    const file: RemoteFile = { url, path: "file.bin", sha256: SHA };
    const path = await fetchFile(file, { cacheDir: dir, ...fast });
    assert.deepEqual(await Deno.readFile(path), CONTENT);
    assert.deepEqual(ranges, ["bytes=123456-"]);
  });
  await server.shutdown();
});

Deno.test("server errors are retried a bounded number of times", async () => {
  const { server, url, requests } = serve({ failFirst: { count: 2, status: 503 } });
  await withTempDir(async (dir) => {
    const file: RemoteFile = { url, path: "file.bin", sha256: SHA };
    await fetchFile(file, { cacheDir: dir, ...fast });
    assert.equal(requests(), 3);
  });
  await server.shutdown();
});

Deno.test("persistent server errors end in an error naming the URL", async () => {
  const { server, url, requests } = serve({ failFirst: { count: 100, status: 500 } });
  await withTempDir(async (dir) => {
    const file: RemoteFile = { url, path: "file.bin", sha256: SHA };
    await assert.rejects(
      fetchFile(file, { cacheDir: dir, attempts: 3, ...fast }),
      (e: Error) =>
        e instanceof DownloadError && e.message.includes(url) && /3 attempts/.test(e.message),
    );
    assert.equal(requests(), 3);
  });
  await server.shutdown();
});

Deno.test("a 404 is not retried", async () => {
  const { server, url, requests } = serve({ failFirst: { count: 100, status: 404 } });
  await withTempDir(async (dir) => {
    await assert.rejects(
      fetchFile({ url, path: "file.bin" }, { cacheDir: dir, ...fast }),
      /HTTP 404/,
    );
    assert.equal(requests(), 1);
  });
  await server.shutdown();
});

Deno.test("a checksum mismatch names the file, the expected and the actual hash", async () => {
  const { server, url } = serve();
  await withTempDir(async (dir) => {
    const wrong = "0".repeat(64);
    await assert.rejects(
      fetchFile({ url, path: "file.bin", sha256: wrong }, { cacheDir: dir, ...fast }),
      (e: Error) =>
        e.message.includes("file.bin") && e.message.includes(wrong) && e.message.includes(SHA),
    );
    // Nothing that looks finished is left behind.
    await assert.rejects(Deno.stat(join(dir, "file.bin")));
  });
  await server.shutdown();
});

Deno.test("a stalled connection times out and is retried", async () => {
  let calls = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    calls++;
    if (calls === 1) {
      // Headers, then silence.
      return new Response(new ReadableStream({ start() {} }), {
        headers: { "content-length": String(CONTENT.length) },
      });
    }
    return new Response(CONTENT);
  });
  await withTempDir(async (dir) => {
    const url = `http://127.0.0.1:${server.addr.port}/f`;
    const path = await fetchFile(
      { url, path: "f.bin", sha256: SHA },
      { cacheDir: dir, idleTimeoutMs: 200, ...fast },
    );
    assert.deepEqual(await Deno.readFile(path), CONTENT);
    assert.equal(calls, 2);
  });
  await server.shutdown();
});

Deno.test("the mirror folder is used before the network, and is checked too", async () => {
  await withTempDir(async (dir) => {
    const mirror = join(dir, "mirror");
    await Deno.mkdir(join(mirror, "workshop"), { recursive: true });
    await Deno.writeFile(join(mirror, "workshop", "file.bin"), CONTENT);
    const unreachable = "http://127.0.0.1:9/never";
    const file: RemoteFile = { url: unreachable, path: "workshop/file.bin", sha256: SHA };
    const path = await fetchFile(file, { mirror, cacheDir: join(dir, "cache"), ...fast });
    assert.equal(path, join(mirror, "workshop", "file.bin"));
    await Deno.writeFile(join(mirror, "workshop", "file.bin"), CONTENT.slice(1));
    await assert.rejects(
      fetchFile({ ...file, size: CONTENT.length }, { mirror, ...fast }),
      /size mismatch: expected 300000 bytes, found 299999/,
    );
  });
});
