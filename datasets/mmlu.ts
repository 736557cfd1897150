/**
 * Where MMLU lives: the `cais/mmlu` Parquet files the LM Evaluation Harness reads (one per
 * subject and split, `<subject>/<split>-00000-of-00001.parquet` in the Hugging Face dataset
 * repository), the original `data.tar` release, and the original CSVs in a mirror folder
 * (`<mirror>/mmlu/{dev,val,test}/<subject>_<split>.csv`).
 *
 * Neither download is pinned to a checksum: no checked copy of either was available when this
 * was written. The readers check every row's shape instead (llm/eval/mmlu/data.ts).
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

const HF_MMLU = "https://huggingface.co/datasets/cais/mmlu/resolve/main";

/** The `cais/mmlu` Parquet file of one subject's split. */
export function mmluParquetFile(subject: string, split: MmluSplit): RemoteFile {
  const name = `${subject}/${split}-00000-of-00001.parquet`;
  return { url: `${HF_MMLU}/${name}`, path: `mmlu/cais/${name}` };
}

/** The original release (Hendrycks et al.), all 57 subjects as CSVs under `data/`. */
export const MMLU_DATA_TAR: RemoteFile = {
  url: "https://people.eecs.berkeley.edu/~hendrycks/data.tar",
  path: "mmlu/data.tar",
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

export type MmluSource = "csv" | "parquet" | "tar";

/**
 * A loader for one source; `fetch` obtains a remote file (mirror, cache, network) and returns
 * its local path. Every file is read once per loader.
 */
export function mmluLoader(
  source: MmluSource,
  options: { csvDir?: string; fetch: (file: RemoteFile) => Promise<string> },
): (subject: string, split: MmluSplit) => Promise<MmluQuestion[]> {
  if (source === "csv") {
    const dir = options.csvDir;
    if (!dir) throw new Error("MMLU source csv: no folder of original CSVs given");
    return (subject, split) => readMmluCsvFile(dir, subject, split);
  }
  if (source === "parquet") {
    return async (subject, split) => {
      const path = await options.fetch(mmluParquetFile(subject, split));
      return parseMmluParquet(await Deno.readFile(path), path, subject);
    };
  }
  let archive: Promise<{ path: string; files: Map<string, Uint8Array> }> | undefined;
  return async (subject, split) => {
    archive ??= options.fetch(MMLU_DATA_TAR).then(async (path) => ({
      path,
      files: readTar(await Deno.readFile(path), path),
    }));
    const { path, files } = await archive;
    return readMmluFromTar(files, subject, split, path);
  };
}
