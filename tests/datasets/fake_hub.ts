/**
 * A local stand-in for the Hugging Face Hub (Deno.serve on 127.0.0.1, a random port), answering
 * the requests `datasets/hf_hub.ts` makes as huggingface.co does:
 *   GET /api/models/<org>/<name>/revision/<rev>   {"id", "sha"}
 *   GET /api/models/<org>/<name>/tree/<rev>       [{type, oid, size, path, lfs?: {oid, size}}]
 *   GET /<org>/<name>/resolve/<rev>/<file>        small files: the bytes; LFS files: 302 to
 *                                                 <cdn>/lfs/<sha256> (another origin, as the Hub
 *                                                 redirects to its CDN)
 *   GET <cdn>/lfs/<sha256>                        the bytes, with Range support (206)
 * A gated repository answers 401 without a token and 403 with a wrong one (the CDN needs none).
 */
import { createHash } from "node:crypto";

/** One repository of the fake Hub. */
export interface FakeRepo {
  /** File name → content. */
  files: Record<string, Uint8Array | string>;
  /** The commit `main` resolves to (default: a fixed 40-hex id). */
  commit?: string;
  /** Files stored in LFS (default: every *.safetensors). */
  lfs?: string[];
  /** Needs `Authorization: Bearer <token>`. */
  gated?: boolean;
  /** LFS files served with other bytes than their listed sha256 (a corrupt CDN copy). */
  corrupt?: string[];
  /** LFS files whose first full request breaks after this many bytes. */
  breakOnce?: Record<string, number>;
}

/** What a test sees of the running fake Hub. */
export interface FakeHub {
  /** Base URL (for HF_ENDPOINT). */
  url: string;
  /** Every request as "METHOD path [range]", in order. */
  requests: string[];
  /** Every Authorization header value the Hub received. */
  authorizations: string[];
  /** Every Authorization header value the CDN received (none should arrive there). */
  cdnAuthorizations: string[];
  close(): Promise<void>;
}

export const FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567";

const bytesOf = (content: Uint8Array | string): Uint8Array<ArrayBuffer> =>
  typeof content === "string" ? new TextEncoder().encode(content) : new Uint8Array(content);
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
const gitBlobId = (data: Uint8Array) =>
  createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");

/** Serves `data` honouring a `Range: bytes=N-` header. */
function ranged(data: Uint8Array<ArrayBuffer>, range: string | null): Response {
  if (range) {
    const start = Number(/bytes=(\d+)-/.exec(range)?.[1] ?? 0);
    if (start >= data.length) return new Response(null, { status: 416 });
    return new Response(data.slice(start), {
      status: 206,
      headers: {
        "content-length": String(data.length - start),
        "content-range": `bytes ${start}-${data.length - 1}/${data.length}`,
      },
    });
  }
  return new Response(data, { headers: { "content-length": String(data.length) } });
}

/** Starts a fake Hub serving `repos` (by `<org>/<name>`); `token` opens the gated ones. */
export function startFakeHub(repos: Record<string, FakeRepo>, token = "hf_fake_token"): FakeHub {
  const requests: string[] = [];
  const authorizations: string[] = [];
  const cdnAuthorizations: string[] = [];
  const lfsBlobs = new Map<
    string,
    { data: Uint8Array<ArrayBuffer>; repo: FakeRepo; name: string }
  >();
  const broken = new Set<string>();
  const isLfs = (repo: FakeRepo, name: string) =>
    repo.lfs ? repo.lfs.includes(name) : name.endsWith(".safetensors");
  for (const repo of Object.values(repos)) {
    for (const [name, content] of Object.entries(repo.files)) {
      if (isLfs(repo, name)) {
        lfsBlobs.set(sha256(bytesOf(content)), { data: bytesOf(content), repo, name });
      }
    }
  }

  const cdn = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    const range = request.headers.get("range");
    requests.push(`${request.method} ${url.pathname}${range ? ` ${range}` : ""}`);
    const auth = request.headers.get("authorization");
    if (auth) cdnAuthorizations.push(auth);
    const lfs = /^\/lfs\/([0-9a-f]{64})$/.exec(url.pathname);
    if (lfs) {
      const blob = lfsBlobs.get(lfs[1]);
      if (!blob) return new Response("no such blob", { status: 404 });
      let data = blob.data;
      if (blob.repo.corrupt?.includes(blob.name)) {
        data = data.slice();
        data[data.length - 1] ^= 0xff;
      }
      const breakAt = blob.repo.breakOnce?.[blob.name];
      if (breakAt !== undefined && !range && !broken.has(blob.name)) {
        broken.add(blob.name);
        const head = data.slice(0, breakAt);
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(head);
            setTimeout(() => controller.error(new Error("connection reset")), 10);
          },
        });
        return new Response(body, { headers: { "content-length": String(data.length) } });
      }
      return ranged(data, range);
    }
    return new Response("not found", { status: 404 });
  });
  const cdnUrl = `http://127.0.0.1:${cdn.addr.port}`;

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    const range = request.headers.get("range");
    requests.push(`${request.method} ${url.pathname}${range ? ` ${range}` : ""}`);
    const auth = request.headers.get("authorization");
    if (auth) authorizations.push(auth);

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repoId = api?.[1] ?? resolve?.[1];
    const repo = repoId ? repos[repoId] : undefined;
    if (!repo) {
      return new Response(JSON.stringify({ error: "Repository not found" }), { status: 404 });
    }
    if (repo.gated && auth !== `Bearer ${token}`) {
      return new Response(JSON.stringify({ error: "Access to model is restricted" }), {
        status: auth ? 403 : 401,
      });
    }
    const commit = repo.commit ?? FAKE_COMMIT;
    const revision = decodeURIComponent(api?.[3] ?? resolve![2]);
    if (revision !== "main" && revision !== commit) {
      return new Response(JSON.stringify({ error: "Revision not found" }), { status: 404 });
    }
    if (api?.[2] === "revision") return Response.json({ id: repoId, sha: commit });
    if (api?.[2] === "tree") {
      return Response.json(
        Object.entries(repo.files).map(([path, content]) => {
          const data = bytesOf(content);
          if (!isLfs(repo, path)) {
            return { type: "file", oid: gitBlobId(data), size: data.length, path };
          }
          const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${
            sha256(data)
          }\nsize ${data.length}\n`;
          return {
            type: "file",
            oid: gitBlobId(bytesOf(pointer)),
            size: data.length,
            path,
            lfs: { oid: sha256(data), size: data.length, pointerSize: pointer.length },
          };
        }),
      );
    }
    const name = decodeURIComponent(resolve![3]);
    const content = repo.files[name];
    if (content === undefined) return new Response("Entry not found", { status: 404 });
    const data = bytesOf(content);
    if (isLfs(repo, name)) {
      return new Response(null, {
        status: 302,
        headers: { location: `${cdnUrl}/lfs/${sha256(data)}` },
      });
    }
    return ranged(data, range);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    authorizations,
    cdnAuthorizations,
    close: async () => {
      await server.shutdown();
      await cdn.shutdown();
    },
  };
}

/** Runs `fn` with environment variables set (undefined: removed), restoring them afterwards. */
export async function withEnv<T>(
  vars: Record<string, string | undefined>,
  fn: () => Promise<T>,
): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** Deterministic bytes standing in for weights. */
export function fakeWeights(length: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 131 + seed * 17 + (i >> 7)) & 0xff);
}

/** The files of a small model repository: config, tokenizer files, single or sharded weights. */
export function fakeModelFiles(
  options: { sharded?: boolean; dtype?: string; modelType?: string } = {},
): Record<string, Uint8Array | string> {
  const config = JSON.stringify({
    model_type: options.modelType ?? "llama",
    hidden_size: 64,
    num_hidden_layers: 2,
    torch_dtype: options.dtype ?? "bfloat16",
  });
  const files: Record<string, Uint8Array | string> = {
    "config.json": config,
    "generation_config.json": JSON.stringify({ eos_token_id: [1, 2] }),
    "tokenizer.json": JSON.stringify({ version: "1.0", model: { type: "BPE", vocab: {} } }),
    "tokenizer_config.json": JSON.stringify({ chat_template: "{{ messages }}" }),
    "README.md": "not fetched",
  };
  if (options.sharded) {
    const a = fakeWeights(150_000, 1), b = fakeWeights(90_000, 2);
    files["model-00001-of-00002.safetensors"] = a;
    files["model-00002-of-00002.safetensors"] = b;
    files["model.safetensors.index.json"] = JSON.stringify({
      metadata: { total_size: 239_000 },
      weight_map: {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
      },
    });
  } else {
    files["model.safetensors"] = fakeWeights(200_000);
  }
  return files;
}
