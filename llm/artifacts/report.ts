/**
 * Artifact kind `report`: what the `report` stage writes: report.html (one self-contained page)
 * and report.json (the data it draws, llm/report/html.ts's ReportData; a number that is not
 * finite is written as null).
 */
import { join } from "node:path";
import type { ReportData } from "../report/html.ts";
import { hasFile, list, object, readJsonIn, string } from "./check.ts";
import { writeFileAtomic } from "../../util/files.ts";

export const REPORT_FILE = "report.html";
export const REPORT_DATA_FILE = "report.json";

export function hasReport(dir: string): boolean {
  return hasFile(dir, REPORT_FILE);
}

/** Writes report.html and report.json. */
export async function writeReport(dir: string, data: ReportData, html: string): Promise<void> {
  await writeFileAtomic(join(dir, REPORT_FILE), html);
  await writeFileAtomic(
    join(dir, REPORT_DATA_FILE),
    JSON.stringify(data, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) +
      "\n",
  );
}

/**
 * report.json of `dir`: the sections are checked to be lists (their rows as written; a
 * number the page could not draw is null).
 */
export async function readReportData(dir: string): Promise<ReportData> {
  const path = join(dir, REPORT_DATA_FILE);
  const data = object(await readJsonIn(dir, REPORT_DATA_FILE), path);
  string(data.title, `${path}: "title"`);
  string(data.createdAt, `${path}: "createdAt"`);
  for (const section of ["lossCurves", "mmlu", "judge", "pairwise"]) {
    list(data[section], `${path}: "${section}"`);
  }
  if (data.responses !== undefined) object(data.responses, `${path}: "responses"`);
  return data as unknown as ReportData;
}
