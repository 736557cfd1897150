/**
 * The public data the workshop uses, by name: where it lives on the internet, where it
 * lives in a mirror folder, and its checksum.
 */
import type { RemoteFile } from "./remote_file.ts";

const BOOK_RAW = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main";

/**
 * The public files pipelines name (`the-verdict`, `instruction-data`, ...), with their pinned
 * checksums.
 */
export const DATASETS: Record<string, RemoteFile> = {
  "the-verdict": {
    url: `${BOOK_RAW}/ch02/01_main-chapter-code/the-verdict.txt`,
    path: "workshop/the-verdict.txt",
    sha256: "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    size: 20479,
  },
  "instruction-data": {
    url: `${BOOK_RAW}/ch07/01_main-chapter-code/instruction-data.json`,
    path: "workshop/instruction-data.json",
    sha256: "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    size: 203524,
  },
  "instruction-data-with-preference": {
    url: `${BOOK_RAW}/ch07/04_preference-tuning-with-dpo/instruction-data-with-preference.json`,
    path: "workshop/instruction-data-with-preference.json",
    sha256: "305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e",
    size: 386968,
  },
};

export function datasetNames(): string[] {
  return Object.keys(DATASETS);
}
