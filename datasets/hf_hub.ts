/**
 * Hugging Face Hub downloads: the files of one model repository at one revision, through the
 * same mirror → download cache → network path (`fetchFile`: resumable, with progress, retried)
 * every other download takes.
 *
 * What is fetched: `config.json`, `tokenizer.json`, `tokenizer_config.json`, the optional small
 * files that exist (`generation_config.json`, `special_tokens_map.json`, `chat_template.jinja`),
 * and the weights: `model.safetensors`, or `model.safetensors.index.json` and the shards its
 * `weight_map` names.
 *
 * How it is checked: the revision is resolved to a commit first (`/api/models/<repo>/revision/
 * <rev>`), and every file is fetched from that commit, so the files belong together even when
 * `main` moves meanwhile. The commit's file list (`/api/models/<repo>/tree/<commit>`) gives each
 * file's size and id: a large (LFS) file's id is the sha256 of its content, checked after the
 * download; a small file's id is its git blob id (sha1 of `blob <size>\0<content>`), checked too.
 *
 * Where files live: a mirror folder holds a repository as `hf/<org>/<name>/<file>` and is read
 * before anything touches the network (a complete copy there is used offline); the download
 * cache keeps files per commit, `hf/<org>/<name>/<commit>/<file>`, with the commit's file list
 * beside them, so a pinned model is never asked for again.
 *
 * Gated repositories (Llama, Gemma): the token comes from the environment variable HF_TOKEN and
 * is sent as `Authorization: Bearer` only; it is never written to a file, a log or a manifest.
 * HF_ENDPOINT replaces `https://huggingface.co` (as in huggingface_hub; tests use it to point
 * at a local server).
 */
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { sleep } from "../util/timers.ts";
import { sha256File } from "../util/hash.ts";
import type { Logger, ProgressReporter } from "../util/progress.ts";
import { defaultDataDir, DownloadError, fetchFile, type RemoteFile } from "./download.ts";
import { isCommitHash } from "./hf_models.ts";

/** The environment variable holding a Hugging Face access token (for gated repositories). */
export const HF_TOKEN_ENV = "HF_TOKEN";
/** The environment variable that replaces the Hub's address. */
export const HF_ENDPOINT_ENV = "HF_ENDPOINT";
const DEFAULT_ENDPOINT = "https://huggingface.co";

/** Files every model folder needs, under Hugging Face's names. */
export const HF_REQUIRED_FILES: readonly string[] = [
  "config.json",
  "tokenizer.json",
  "tokenizer_config.json",
];
/** Small files fetched when the repository has them. */
export const HF_OPTIONAL_FILES: readonly string[] = [
  "generation_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];
/** The single-file weights. */
export const HF_WEIGHTS_FILE = "model.safetensors";
/** The index of sharded weights (`weight_map`: tensor → shard file). */
export const HF_WEIGHTS_INDEX = "model.safetensors.index.json";

/** The Hub's base address: HF_ENDPOINT, else https://huggingface.co (no trailing slash). */
export function hubEndpoint(): string {
  return (Deno.env.get(HF_ENDPOINT_ENV) || DEFAULT_ENDPOINT).replace(/\/+$/, "");
}

/** Whether `repo` has the form `<org>/<name>` of a Hub repository. */
export function isRepoId(repo: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo) && !repo.includes("..");
}

/** One file of a commit, as the Hub's tree API lists it. */
export interface HubFileEntry {
  /** Path inside the repository. */
  path: string;
  /** Bytes. */
  size: number;
  /** The git blob id (sha1): for an LFS file, the id of its small pointer file. */
  oid: string;
  /** For a file stored in LFS: the sha256 and size of its content. */
  lfs?: { sha256: string; size: number };
}

/** A revision of a repository resolved to a commit, with the commit's files. */
export interface HubListing {
  /** `<org>/<name>`. */
  repo: string;
  /** The revision asked for (branch, tag or commit). */
  revision: string;
  /** The commit it resolved to (40 hex digits). */
  commit: string;
  /** The files at the top of the repository. */
  files: HubFileEntry[];
}

/** One file of a downloaded model folder. */
export interface HfFileRecord {
  /** File name (Hugging Face's). */
  name: string;
  /** Where it is on this machine (mirror, download cache or a local folder). */
  path: string;
  /** Bytes. */
  size: number;
  /** sha256 of the content (checked against the Hub's for LFS files). */
  sha256: string;
  /** Whether the Hub stores it in LFS. Unknown (undefined) for mirror and local copies. */
  lfs?: boolean;
}

/** The weights' size, known before they are downloaded. */
export interface HfSizeEstimate {
  /** Bytes of the weights as stored (index `total_size`, else the file sizes). */
  storedBytes: number;
  /** The stored dtype, from config.json (`torch_dtype` or `dtype`), or "unknown". */
  dtype: string;
  /** Bytes the weights take at fp32, which our engine loads them as. */
  fp32Bytes: number;
}

/** What `downloadHfModel` fetched. */
export interface HfModelFiles {
  /** `<org>/<name>` (empty for a local folder). */
  repo: string;
  /** The revision asked for. */
  revision: string;
  /** The commit the files come from; null for a mirror copy (its commit is unknown). */
  commit: string | null;
  /** Where the files came from. */
  source: "hub" | "mirror" | "local";
  /** Every file, the required ones first and the weights last. */
  files: HfFileRecord[];
  /** The weights' size. */
  size: HfSizeEstimate;
}

/** Options of `downloadHfModel`. */
export interface HfDownloadOptions {
  /** Mirror folder (holding `hf/<org>/<name>/<file>`), read before the network. */
  mirror?: string;
  /** Download cache (default: see `fetchFile`). */
  cacheDir?: string;
  /** Shows each download's bytes as they arrive. */
  progress?: ProgressReporter;
  /** Says where files came from, and about retries. */
  log?: Logger;
  /** Aborts the downloads; partial files stay for a later resume. */
  signal?: AbortSignal;
  /** Attempts for network errors and 5xx answers (default 4). */
  attempts?: number;
  /** Milliseconds before the first retry (default 1000). */
  retryDelayMs?: number;
  /**
   * Called with the weights' size after the small files arrived and before the weights are
   * downloaded; throw to refuse (e.g. a model that cannot fit in memory).
   */
  checkSize?: (size: HfSizeEstimate) => void;
}

/** The Hub refused access (401/403): a gated or private repository, or a bad token. */
export class HubAccessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HubAccessError";
  }
}

/** `Authorization` for the token in HF_TOKEN, if any (only ever sent, never stored). */
function authHeaders(): Record<string, string> {
  const token = Deno.env.get(HF_TOKEN_ENV)?.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The error for a 401/403 answer: which variable to set and where the licence is accepted. */
function accessError(repo: string, status: number, url: string): HubAccessError {
  const page = `${hubEndpoint()}/${repo}`;
  const hasToken = Boolean(Deno.env.get(HF_TOKEN_ENV)?.trim());
  const advice = hasToken
    ? `${HF_TOKEN_ENV} is set, but its account may not have accepted the licence or the token ` +
      `may be invalid: accept the licence at ${page} with that account, and check the token`
    : `${repo} is gated (or private): accept its licence at ${page}, create an access token ` +
      `(${hubEndpoint()}/settings/tokens) and set ${HF_TOKEN_ENV} to it`;
  return new HubAccessError(`the Hub refused ${url} (HTTP ${status}): ${advice}`);
}

function isRetryable(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** GET a JSON answer of the Hub API, retried on network errors and 5xx; follows `Link: next`. */
async function fetchHubJson(
  url: string,
  repo: string,
  options: HfDownloadOptions,
): Promise<{ body: unknown; next?: string }> {
  const attempts = options.attempts ?? 4;
  let delay = options.retryDelayMs ?? 1000;
  let lastError = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    options.signal?.throwIfAborted();
    try {
      const signals = [AbortSignal.timeout(60_000), ...(options.signal ? [options.signal] : [])];
      const response = await fetch(url, {
        headers: { Accept: "application/json", ...authHeaders() },
        signal: AbortSignal.any(signals),
      });
      if (response.status === 401 || response.status === 403) {
        await response.body?.cancel();
        throw accessError(repo, response.status, url);
      }
      if (response.ok) {
        const text = await response.text();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          throw new DownloadError(`${url}: the Hub answered something that is not JSON`);
        }
        const next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get("link") ?? "")?.[1];
        return { body, next };
      }
      await response.body?.cancel();
      const reason = `HTTP ${response.status} ${response.statusText}`.trim();
      if (!isRetryable(response.status)) {
        throw new DownloadError(
          response.status === 404
            ? `${url}: not found (${reason}): check the repository name and the revision`
            : `${url}: ${reason}`,
          response.status,
        );
      }
      lastError = reason;
    } catch (error) {
      if (error instanceof DownloadError || error instanceof HubAccessError) throw error;
      if (options.signal?.aborted) throw error;
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (attempt === attempts) break;
    options.log?.warn(`${url} failed (${lastError}); retrying in ${delay} ms`);
    await sleep(delay);
    delay *= 2;
  }
  throw new DownloadError(
    `${url} failed after ${attempts} attempts: ${lastError}\n${offlineHint(repo, options.mirror)}`,
  );
}

/** How to provide a repository without network. */
function offlineHint(repo: string, mirror?: string): string {
  const folder = `${mirror ?? "<mirror>"}/hf/${repo}`;
  return `to work offline, put the repository's files (${
    [...HF_REQUIRED_FILES, HF_WEIGHTS_FILE].join(", ")
  }, or the index and its shards) in ${folder}/ and pass --mirror ${
    mirror ?? "<mirror>"
  } (or set GROUNDUP_MIRROR)`;
}

function asEntry(raw: unknown, url: string): HubFileEntry | undefined {
  const item = raw as Record<string, unknown>;
  if (item?.type !== "file") return undefined;
  if (typeof item.path !== "string" || typeof item.size !== "number") {
    throw new DownloadError(`${url}: a tree entry without path or size: ${JSON.stringify(raw)}`);
  }
  const lfs = item.lfs as Record<string, unknown> | undefined;
  return {
    path: item.path,
    size: item.size,
    oid: String(item.oid ?? ""),
    ...(lfs && typeof lfs.oid === "string"
      ? {
        lfs: {
          sha256: lfs.oid.replace(/^sha256:/, "").toLowerCase(),
          size: Number(lfs.size ?? item.size),
        },
      }
      : {}),
  };
}

/** Where a commit's file list is kept in the download cache. */
function listingCachePath(cacheDir: string, repo: string, commit: string): string {
  return join(cacheDir, "hf", repo, commit, ".hub-listing.json");
}

/**
 * Resolves `revision` of `repo` to a commit and lists the commit's files. A listing of a full
 * commit hash never changes, so it is kept in the download cache and read from there next time.
 */
export async function listHubRepo(
  repo: string,
  revision: string,
  options: HfDownloadOptions = {},
): Promise<HubListing> {
  const cacheDir = options.cacheDir ?? defaultDataDir();
  if (isCommitHash(revision)) {
    try {
      const cached = JSON.parse(
        await Deno.readTextFile(listingCachePath(cacheDir, repo, revision)),
      ) as HubListing;
      if (cached.commit === revision && Array.isArray(cached.files)) return cached;
    } catch { /* not listed yet */ }
  }
  const endpoint = hubEndpoint();
  const revisionUrl = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
  const { body: info } = await fetchHubJson(revisionUrl, repo, options);
  const commit = (info as { sha?: unknown })?.sha;
  if (typeof commit !== "string" || !isCommitHash(commit)) {
    throw new DownloadError(`${revisionUrl}: the answer has no commit "sha"`);
  }
  if (isCommitHash(revision) && commit !== revision) {
    throw new DownloadError(`${revisionUrl}: asked for commit ${revision}, got ${commit}`);
  }
  const files: HubFileEntry[] = [];
  let url: string | undefined = `${endpoint}/api/models/${repo}/tree/${commit}`;
  while (url) {
    const page: { body: unknown; next?: string } = await fetchHubJson(url, repo, options);
    if (!Array.isArray(page.body)) throw new DownloadError(`${url}: expected a list of files`);
    for (const raw of page.body) {
      const entry = asEntry(raw, url);
      if (entry) files.push(entry);
    }
    url = page.next;
  }
  const listing: HubListing = { repo, revision, commit, files };
  const cachePath = listingCachePath(cacheDir, repo, commit);
  await Deno.mkdir(dirname(cachePath), { recursive: true });
  const temp = `${cachePath}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(temp, JSON.stringify({ ...listing, revision: commit }, null, 1));
  await Deno.rename(temp, cachePath);
  return listing;
}

/** The git blob id of a file's content: sha1 of `blob <size>\0<content>`. */
async function gitBlobId(path: string): Promise<string> {
  const content = await Deno.readFile(path);
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

/** The file names a model folder takes from a repository's top-level names. */
function selectFiles(
  names: Set<string>,
  where: string,
): { small: string[]; sharded: boolean } {
  const missing = HF_REQUIRED_FILES.filter((name) => !names.has(name));
  const sharded = names.has(HF_WEIGHTS_INDEX);
  if (!sharded && !names.has(HF_WEIGHTS_FILE)) missing.push(HF_WEIGHTS_FILE);
  if (missing.length > 0) {
    throw new DownloadError(
      `${where} has no ${missing.join(", ")}${
        missing.includes(HF_WEIGHTS_FILE) ? ` (nor ${HF_WEIGHTS_INDEX})` : ""
      }; it holds: ${[...names].sort().join(", ") || "nothing"}`,
    );
  }
  const small = [
    ...HF_REQUIRED_FILES,
    ...HF_OPTIONAL_FILES.filter((name) => names.has(name)),
    ...(sharded ? [HF_WEIGHTS_INDEX] : []),
  ];
  return { small, sharded };
}

/** The shard files an index names, each once, in order. */
async function shardsOf(indexPath: string): Promise<string[]> {
  let index: { weight_map?: Record<string, unknown> };
  try {
    index = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (error) {
    throw new DownloadError(`${indexPath}: not readable JSON: ${(error as Error).message}`);
  }
  if (!index.weight_map || typeof index.weight_map !== "object") {
    throw new DownloadError(`${indexPath}: no "weight_map" (tensor name → shard file)`);
  }
  const shards = [...new Set(Object.values(index.weight_map).map(String))].sort();
  for (const shard of shards) {
    if (shard.includes("/") || shard.includes("\\") || shard.startsWith(".")) {
      throw new DownloadError(`${indexPath}: shard "${shard}" is not a file name of the folder`);
    }
  }
  return shards;
}

/** The weights' size at fp32, from config.json's dtype and the stored bytes. */
export async function estimateFp32Size(
  configPath: string,
  storedBytes: number,
  indexPath?: string,
): Promise<HfSizeEstimate> {
  const config = JSON.parse(await Deno.readTextFile(configPath)) as Record<string, unknown>;
  const text = config.text_config as Record<string, unknown> | undefined;
  const dtype = String(
    config.torch_dtype ?? config.dtype ?? text?.torch_dtype ?? text?.dtype ?? "unknown",
  );
  if (indexPath) {
    const total = JSON.parse(await Deno.readTextFile(indexPath))?.metadata?.total_size;
    if (typeof total === "number" && total > 0) storedBytes = total;
  }
  // Hub checkpoints are 16-bit unless they say otherwise; an unknown dtype counts as 16-bit,
  // which over- rather than under-estimates the fp32 size.
  const width = dtype === "float32" ? 4 : 2;
  return { storedBytes, dtype, fp32Bytes: Math.round((storedBytes * 4) / width) };
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** A model folder in Hugging Face layout on this machine (a mirror copy or a local folder). */
export async function readLocalHfFolder(
  dir: string,
  options: Pick<HfDownloadOptions, "checkSize"> = {},
): Promise<Omit<HfModelFiles, "repo" | "revision" | "commit" | "source">> {
  const names = new Set<string>();
  try {
    for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.add(entry.name);
  } catch (error) {
    throw new DownloadError(`${dir}: cannot read the folder: ${(error as Error).message}`);
  }
  const { small, sharded } = selectFiles(names, dir);
  const weights = sharded ? await shardsOf(join(dir, HF_WEIGHTS_INDEX)) : [HF_WEIGHTS_FILE];
  const absent = weights.filter((name) => !names.has(name));
  if (absent.length > 0) {
    throw new DownloadError(
      `${join(dir, HF_WEIGHTS_INDEX)} names ${absent.join(", ")}, missing from ${dir}`,
    );
  }
  let stored = 0;
  for (const name of weights) stored += (await Deno.stat(join(dir, name))).size;
  const size = await estimateFp32Size(
    join(dir, "config.json"),
    stored,
    sharded ? join(dir, HF_WEIGHTS_INDEX) : undefined,
  );
  options.checkSize?.(size);
  const files: HfFileRecord[] = [];
  for (const name of [...small, ...weights]) {
    const path = join(dir, name);
    files.push({ name, path, size: (await Deno.stat(path)).size, sha256: await sha256File(path) });
  }
  return { files, size };
}

/**
 * Brings the model files of `repo` at `revision` onto this machine: from the mirror folder when
 * it holds the repository (no network), else from the download cache or the Hub, every file
 * checked against the commit's listing. Returns where each file is, with its sha256.
 */
export async function downloadHfModel(
  repo: string,
  revision: string,
  options: HfDownloadOptions = {},
): Promise<HfModelFiles> {
  if (!isRepoId(repo)) throw new Error(`"${repo}" is not a Hub repository id (<org>/<name>)`);
  if (options.mirror) {
    const dir = join(options.mirror, "hf", repo);
    if (await fileExists(join(dir, "config.json"))) {
      options.log?.info(`using ${dir} from the mirror folder (its revision is not checked)`);
      const local = await readLocalHfFolder(dir, options);
      return { repo, revision, commit: null, source: "mirror", ...local };
    }
  }
  const listing = await listHubRepo(repo, revision, options);
  const { commit } = listing;
  const byName = new Map(listing.files.map((entry) => [entry.path, entry]));
  const where = `${repo} at ${commit}`;
  const { small, sharded } = selectFiles(new Set(byName.keys()), where);
  const cacheDir = options.cacheDir ?? defaultDataDir();

  const fetchOne = async (name: string): Promise<HfFileRecord> => {
    const entry = byName.get(name);
    if (!entry) throw new DownloadError(`${where} has no ${name} (named by ${HF_WEIGHTS_INDEX})`);
    const remote: RemoteFile = {
      url: `${hubEndpoint()}/${repo}/resolve/${commit}/${encodeURIComponent(name)}`,
      path: `hf/${repo}/${name}`,
      cachePath: `hf/${repo}/${commit}/${name}`,
      flatMirror: false,
      size: entry.lfs?.size ?? entry.size,
      ...(entry.lfs ? { sha256: entry.lfs.sha256 } : {}),
    };
    let path: string;
    try {
      path = await fetchFile(remote, {
        mirror: options.mirror,
        cacheDir,
        progress: options.progress,
        log: options.log,
        signal: options.signal,
        attempts: options.attempts,
        retryDelayMs: options.retryDelayMs,
        headers: authHeaders(),
      });
    } catch (error) {
      if (error instanceof DownloadError && (error.status === 401 || error.status === 403)) {
        throw accessError(repo, error.status, remote.url);
      }
      throw error;
    }
    if (entry.lfs) return { name, path, size: remote.size!, sha256: entry.lfs.sha256, lfs: true };
    // A small file is in git itself: its id is the git blob id of its content.
    const actual = await gitBlobId(path);
    if (entry.oid && actual !== entry.oid) {
      if (path.startsWith(cacheDir)) await Deno.remove(path).catch(() => {});
      throw new DownloadError(
        `${path}: git blob id mismatch: expected ${entry.oid}, got ${actual} (source ${remote.url})`,
      );
    }
    return { name, path, size: entry.size, sha256: await sha256File(path), lfs: false };
  };

  const files: HfFileRecord[] = [];
  for (const name of small) files.push(await fetchOne(name));
  const indexPath = sharded ? files.find((f) => f.name === HF_WEIGHTS_INDEX)!.path : undefined;
  const weights = indexPath ? await shardsOf(indexPath) : [HF_WEIGHTS_FILE];
  let stored = 0;
  for (const name of weights) {
    const entry = byName.get(name);
    if (!entry) throw new DownloadError(`${where} has no ${name} (named by ${HF_WEIGHTS_INDEX})`);
    stored += entry.lfs?.size ?? entry.size;
  }
  const size = await estimateFp32Size(
    files.find((f) => f.name === "config.json")!.path,
    stored,
    indexPath,
  );
  options.checkSize?.(size);
  for (const name of weights) files.push(await fetchOne(name));
  return { repo, revision, commit, source: "hub", files, size };
}
