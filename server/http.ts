/**
 * HTTP helpers of `serve`: JSON answers, bounded request bodies, and the API key compared in
 * constant time.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { RequestError } from "./requests.ts";

/** A JSON response. */
export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** Reads the body as text, refusing more than `limit` bytes (413) before reading them all. */
export async function readBody(request: Request, limit: number): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  const tooLarge = () =>
    new RequestError(`request body larger than ${limit} bytes`, null, 413, "body_too_large");
  if (declared > limit) throw tooLarge();
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) bytes.set(chunk, at), at += chunk.length;
  return new TextDecoder().decode(bytes);
}

/** The body parsed as JSON (400 when it is not), at most `limit` bytes. */
export async function readJson(request: Request, limit: number): Promise<unknown> {
  const text = await readBody(request, limit);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RequestError(`the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** True when `given` equals `expected`, in time that does not depend on where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** SHA-256 of a file, streamed (weights can be gigabytes): "sha256:<hex>". */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}
