/**
 * Where MMLU lives: the `cais/mmlu` Parquet files the LM Evaluation Harness reads, the original
 * `data.tar` release, and the original CSVs in a mirror folder
 * (`<mirror>/mmlu/{dev,val,test}/<subject>_<split>.csv`).
 *
 * Both downloads are pinned. Parquet: the dataset's `all` configuration (every subject in one
 * file per split, with a `subject` column; the same rows as the per-subject files the harness
 * loads) at Hugging Face revision c30699e8…, each file with its sha256 (the Git LFS digest). The
 * tar: the release's sha256, the same bytes as `data.tar` in that Hugging Face revision. Each
 * digest was taken from at least two unrelated public projects that pin the same file (found
 * with the search tool; none could be downloaded here to check).
 *
 * Files a user names (`parquet_dir`: a Hugging Face snapshot of `cais/mmlu`; `tar_file`) are read
 * in place without a pin: their content hashes go into the cache key instead.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type MmluQuestion,
  type MmluSplit,
  originalCsvPath,
  parseMmluParquet,
  readMmluCsvFile,
  readMmluFromTar,
  readTar,
} from "../llm/eval/mmlu/data.ts";
import type { RemoteFile } from "./download.ts";

/** The `cais/mmlu` revision the Parquet files are pinned to (the dataset's Git commit). */
export const CAIS_MMLU_REVISION = "c30699e8356da336a370243923dbaf21066bb9fe";
const HF_MMLU = `https://huggingface.co/datasets/cais/mmlu/resolve/${CAIS_MMLU_REVISION}`;

/** sha256 of `all/<split>-00000-of-00001.parquet` at CAIS_MMLU_REVISION. */
const ALL_PARQUET_SHA256: Record<MmluSplit, string> = {
  dev: "2b19bde1ed8ca6b482fb283abc90e8e0d9d228947029c0b91795d64b28b3bc3f",
  validation: "66cdf0b090ccb657d18d13cd81e31fdc55c3467da9642ffb178653268a97c8ef",
  test: "74a41822ce7d3def56e1682f958469c04642a5336a5ce912fa375fdb90fb25d7",
};

/** The `cais/mmlu` file name of one split of a configuration (`all` or a subject). */
export function parquetName(config: string, split: MmluSplit): string {
  return `${config}/${split}-00000-of-00001.parquet`;
}

/** The pinned `cais/mmlu` Parquet file of one split, all 57 subjects. */
export function mmluParquetFile(split: MmluSplit): RemoteFile {
  const name = parquetName("all", split);
  return {
    url: `${HF_MMLU}/${name}`,
    path: `mmlu/cais/${name}`,
    sha256: ALL_PARQUET_SHA256[split],
  };
}

/** The original release (Hendrycks et al.), all 57 subjects as CSVs under `data/`. */
export const MMLU_DATA_TAR: RemoteFile = {
  url: "https://people.eecs.berkeley.edu/~hendrycks/data.tar",
  path: "mmlu/data.tar",
  sha256: "bec563ba4bac1d6aaf04141cd7d1605d7a5ca833e38f994051e818489592989b",
};

/** The folder of original CSVs in a mirror, if it holds one. */
export function mmluMirrorFolder(mirror: string | undefined): string | undefined {
  if (!mirror) return undefined;
  const dir = join(mirror, "mmlu");
  return existsSync(dir) ? dir : undefined;
}

/** True when `dir` holds the CSV of this subject's split. */
export function csvFolderHas(dir: string, subject: string, split: MmluSplit): boolean {
  return existsSync(join(dir, originalCsvPath(subject, split)));
}

/**
 * Where MMLU questions are read from: the original release's CSV folder, `cais/mmlu` parquet files,
 * or the release tarball.
 */
export type MmluSource = "csv" | "parquet" | "tar";

/**
 * The file of a local `cais/mmlu` snapshot that holds a subject's split: the subject's own file
 * when the snapshot has it, else the `all` file (read and filtered by subject).
 */
export function parquetDirFile(dir: string, subject: string, split: MmluSplit): string {
  const own = join(dir, parquetName(subject, split));
  return existsSync(own) ? own : join(dir, parquetName("all", split));
}

/** Where a loader reads from, beyond its source. */
export interface MmluLoaderOptions {
  /** The folder of original CSVs (source csv). */
  csvDir?: string;
  /** A local `cais/mmlu` snapshot read in place instead of the pinned download (source parquet). */
  parquetDir?: string;
  /** A local data.tar read in place instead of the pinned download (source tar). */
  tarFile?: string;
  /** Obtains a remote file (mirror, cache, network) and returns its local path. */
  fetch: (file: RemoteFile) => Promise<string>;
}

/** A loader for one source. Every file is read once per loader. */
export function mmluLoader(
  source: MmluSource,
  options: MmluLoaderOptions,
): (subject: string, split: MmluSplit) => Promise<MmluQuestion[]> {
  if (source === "csv") {
    const dir = options.csvDir;
    if (!dir) throw new Error("MMLU source csv: no folder of original CSVs given");
    return (subject, split) => readMmluCsvFile(dir, subject, split);
  }
  if (source === "parquet") {
    const files = new Map<string, Promise<MmluQuestion[]>>();
    // A subject's own file may leave its subject column empty (`ownSubject` fills it in); the
    // `all` file names every row's subject, and is read once for all of them.
    const read = (path: string, ownSubject?: string) => {
      let questions = files.get(path);
      if (!questions) {
        questions = Deno.readFile(path).then((bytes) => parseMmluParquet(bytes, path, ownSubject));
        files.set(path, questions);
      }
      return questions;
    };
    return async (subject, split) => {
      const dir = options.parquetDir;
      let path: string;
      if (dir === undefined) path = await options.fetch(mmluParquetFile(split));
      else {
        path = parquetDirFile(dir, subject, split);
        if (!existsSync(path)) {
          throw new Error(
            `MMLU parquet: expected ${
              join(dir, parquetName(subject, split))
            } or ${path}; neither exists`,
          );
        }
      }
      const own = dir !== undefined && path === join(dir, parquetName(subject, split));
      const questions = (await read(path, own ? subject : undefined))
        .filter((q) => q.subject === subject);
      if (questions.length === 0) {
        throw new Error(`${path}: expected questions of subject "${subject}", found none`);
      }
      return questions;
    };
  }
  let archive: Promise<{ path: string; files: Map<string, Uint8Array> }> | undefined;
  return async (subject, split) => {
    archive ??= (options.tarFile ? Promise.resolve(options.tarFile) : options.fetch(MMLU_DATA_TAR))
      .then(async (path) => ({ path, files: readTar(await Deno.readFile(path), path) }));
    const { path, files } = await archive;
    return readMmluFromTar(files, subject, split, path);
  };
}
