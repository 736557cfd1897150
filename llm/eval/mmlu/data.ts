/**
 * MMLU questions from the three publications the project reads:
 *   - the original CSVs (`<subject>_<split>.csv`, no header, `question,A,B,C,D,answer` with a
 *     letter answer), as files in a folder or inside the original `data.tar` release
 *     (`data/{dev,val,test}/...`);
 *   - the `cais/mmlu` Parquet files the harness reads (columns question, subject, choices (a
 *     list of four strings), answer (0–3)).
 * All three become the same `MmluQuestion`s.
 */
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import { parseCsv } from "./csv.ts";

export const CHOICE_LETTERS = ["A", "B", "C", "D"] as const;

/** One multiple-choice question, as the harness's `cais/mmlu` rows hold it. */
export interface MmluQuestion {
  /** The subject's file name, e.g. "high_school_physics". */
  subject: string;
  /** The question text. */
  question: string;
  /** The four answers, in order A–D. */
  choices: [string, string, string, string];
  /** Index of the right choice, 0–3 (the harness's `answer`). */
  answer: number;
}

/** The splits as `cais/mmlu` names them; the original release calls validation `val`. */
export type MmluSplit = "dev" | "validation" | "test";

/** The original release's folder and file suffix for a split. */
export function originalSplitName(split: MmluSplit): "dev" | "val" | "test" {
  return split === "validation" ? "val" : split;
}

/** The path of a split's CSV under a data root (`<root>/<split>/<subject>_<split>.csv`). */
export function originalCsvPath(subject: string, split: MmluSplit): string {
  const s = originalSplitName(split);
  return `${s}/${subject}_${s}.csv`;
}

/** Questions of one original-format CSV; errors name `source`, the line and the problem. */
export function parseMmluCsv(text: string, subject: string, source: string): MmluQuestion[] {
  return parseCsv(text, source).map(({ fields, line }) => {
    if (fields.length !== 6) {
      throw new Error(
        `${source}:${line}: expected 6 fields (question,A,B,C,D,answer), found ${fields.length}`,
      );
    }
    const answer = CHOICE_LETTERS.indexOf(fields[5].trim() as typeof CHOICE_LETTERS[number]);
    if (answer < 0) {
      throw new Error(
        `${source}:${line}: expected the answer A, B, C or D in the 6th field, found ${
          JSON.stringify(fields[5])
        }`,
      );
    }
    return {
      subject,
      question: fields[0],
      choices: [fields[1], fields[2], fields[3], fields[4]],
      answer,
    };
  });
}

/** Reads `<root>/<split>/<subject>_<split>.csv` (the mirror's `mmlu/` folder holds this layout). */
export async function readMmluCsvFile(
  root: string,
  subject: string,
  split: MmluSplit,
): Promise<MmluQuestion[]> {
  const path = `${root}/${originalCsvPath(subject, split)}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`MMLU ${subject} ${split}: cannot read ${path}: ${(error as Error).message}`);
  }
  return parseMmluCsv(text, subject, path);
}

// ---------------------------------------------------------------------------------------------
// Parquet (cais/mmlu)

/** Questions of one `cais/mmlu` Parquet file; `source` names it in errors. */
export async function parseMmluParquet(
  bytes: Uint8Array,
  source: string,
  expectedSubject?: string,
): Promise<MmluQuestion[]> {
  const file = bytes.buffer.slice(
    bytes.byteOffset,
    bytes.byteOffset + bytes.byteLength,
  ) as ArrayBuffer;
  let metadata;
  try {
    metadata = parquetMetadata(file);
  } catch (error) {
    throw new Error(`${source}: not a readable Parquet file: ${(error as Error).message}`);
  }
  const columns = new Set(metadata.schema.map((s) => s.name));
  for (const name of ["question", "choices", "answer"]) {
    if (!columns.has(name)) {
      throw new Error(
        `${source}: expected the cais/mmlu columns question, subject, choices, answer; ` +
          `"${name}" is missing (columns: ${[...columns].slice(1).join(", ")})`,
      );
    }
  }
  const rows = await parquetReadObjects({ file, metadata });
  return rows.map((row, i) => {
    const where = `${source}: row ${i}`;
    const { question, choices, subject } = row as Record<string, unknown>;
    const answer = Number(row.answer); // INT64 columns arrive as bigint
    if (typeof question !== "string") throw new Error(`${where}: expected a string question`);
    if (
      !Array.isArray(choices) || choices.length !== 4 ||
      choices.some((c) => typeof c !== "string")
    ) {
      throw new Error(`${where}: expected choices to be a list of 4 strings`);
    }
    if (!Number.isInteger(answer) || answer < 0 || answer > 3) {
      throw new Error(`${where}: expected answer 0–3, found ${String(row.answer)}`);
    }
    const name = typeof subject === "string" && subject ? subject : expectedSubject;
    if (!name) throw new Error(`${where}: no subject`);
    if (expectedSubject && name !== expectedSubject) {
      throw new Error(`${where}: expected subject "${expectedSubject}", found "${name}"`);
    }
    return {
      subject: name,
      question,
      choices: choices as MmluQuestion["choices"],
      answer,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// the original data.tar

/**
 * The regular files of a ustar (or old-style GNU/V7) tar archive, by path: 512-byte headers,
 * the size in octal at offset 124, the contents padded to 512 bytes, two zero blocks at the end.
 */
export function readTar(bytes: Uint8Array, source = "<tar>"): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const decoder = new TextDecoder();
  const text = (start: number, length: number) => {
    const raw = bytes.subarray(start, start + length);
    const end = raw.indexOf(0);
    return decoder.decode(end < 0 ? raw : raw.subarray(0, end));
  };
  let offset = 0;
  let longName: string | undefined;
  while (offset + 512 <= bytes.length) {
    const header = bytes.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break; // end of archive
    let checksum = 0;
    for (let i = 0; i < 512; i++) checksum += i >= 148 && i < 156 ? 32 : header[i];
    const stored = parseInt(text(offset + 148, 8).trim() || "0", 8);
    if (stored !== checksum) {
      throw new Error(
        `${source}: the tar header at byte ${offset} has checksum ${stored}, expected ${checksum}: not a tar archive or damaged`,
      );
    }
    const size = parseInt(text(offset + 124, 12).trim() || "0", 8);
    const type = String.fromCharCode(header[156] || 48);
    const prefix = text(offset + 345, 155);
    let name = text(offset, 100);
    if (text(offset + 257, 5) === "ustar" && prefix) name = `${prefix}/${name}`;
    const dataStart = offset + 512;
    if (dataStart + size > bytes.length) {
      throw new Error(
        `${source}: "${name}" needs ${size} bytes at byte ${dataStart}, but the archive ends at ${bytes.length}`,
      );
    }
    const data = bytes.subarray(dataStart, dataStart + size);
    if (type === "L") longName = decoder.decode(data).replace(/\0+$/, ""); // GNU long name
    else {
      if (type === "0" || type === "7") files.set(longName ?? name, data);
      longName = undefined;
    }
    offset = dataStart + Math.ceil(size / 512) * 512;
  }
  return files;
}

/**
 * One subject's split from the original release's tar: `data/<split>/<subject>_<split>.csv`
 * (any leading folder is accepted).
 */
export function readMmluFromTar(
  files: Map<string, Uint8Array>,
  subject: string,
  split: MmluSplit,
  source = "data.tar",
): MmluQuestion[] {
  const wanted = originalCsvPath(subject, split);
  const path = [...files.keys()].find((p) => p === wanted || p.endsWith(`/${wanted}`));
  if (!path) {
    throw new Error(`${source}: no ${wanted} in the archive (expected data/${wanted})`);
  }
  return parseMmluCsv(new TextDecoder().decode(files.get(path)), subject, `${source}:${path}`);
}
