/**
 * The open models groundup knows by name, like `litgpt download list`: family, repository,
 * pinned revision, parameters, memory at fp32, gated or not, licence, and whether the model fits
 * in the memory this machine has free right now.
 *
 *   deno task models [--json]
 */
import { parseArgs } from "node:util";
import { HF_MODELS, type HfCatalogModel } from "../datasets/hf_models.ts";

/** One catalog entry with this machine's verdict. */
export interface CatalogRow extends HfCatalogModel {
  /** Whether its fp32 weights fit in the memory available now. */
  fits: boolean;
}

/** The catalog, each entry judged against `availableBytes` of free memory. */
export function catalogRows(availableBytes: number): CatalogRow[] {
  return HF_MODELS.map((model) => ({ ...model, fits: model.fp32Bytes <= availableBytes }));
}

const GIB = 2 ** 30;

/** 134.5M, 596M, 1.00B, 1.24B (as ../shared/REFERENCE.md writes them). */
export function formatParameters(count: number): string {
  if (count >= 0.9995e9) return `${(count / 1e9).toFixed(2)}B`;
  return `${(count / 1e6).toFixed(count < 2e8 ? 1 : 0)}M`;
}

function formatGib(bytes: number): string {
  return `${(bytes / GIB).toFixed(2)} GiB`;
}

/** The catalog as an aligned text table, with the free memory it was judged against. */
export function renderCatalog(rows: CatalogRow[], availableBytes: number): string {
  const header = [
    "id",
    "family",
    "repo",
    "revision",
    "parameters",
    "fp32",
    "gated",
    "licence",
    "kind",
    "fits",
  ];
  const cells = rows.map((row) => [
    row.id,
    row.family,
    row.repo,
    row.revisionPinned ? row.revision.slice(0, 12) : `${row.revision} (unpinned)`,
    formatParameters(row.parameters),
    formatGib(row.fp32Bytes),
    row.gated ? "yes" : "no",
    row.licence,
    row.kind,
    row.fits ? "yes" : "no",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...cells.map((c) => c[i].length)));
  const line = (values: string[]) =>
    values.map((value, i) => value.padEnd(widths[i])).join("  ").trimEnd();
  return [
    `Open models (${rows.length}); free memory now: ${formatGib(availableBytes)} ` +
    `(fits: fp32 weights ≤ free memory)`,
    "",
    line(header),
    ...cells.map(line),
    "",
    "Use one: a pipeline stage `load-hf-model: {model: <id>}`, or --model <id> with " +
    "generate, chat and serve.",
    "Gated models: accept the licence at https://huggingface.co/<repo> and set HF_TOKEN.",
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { json: { type: "boolean", default: false }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log("usage: deno task models [--json]");
    Deno.exit(0);
  }
  const available = Deno.systemMemoryInfo().available;
  const rows = catalogRows(available);
  if (values.json) {
    console.log(JSON.stringify({ available_bytes: available, models: rows }, null, 2));
  } else {
    console.log(renderCatalog(rows, available));
  }
}
