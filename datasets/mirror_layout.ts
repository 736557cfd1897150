/**
 * What a mirror folder must hold for a file the project downloads: the file's own path and
 * the other files published with it (the seven files of a GPT-2 release, both files of a
 * Hugging Face copy), so an offline user can set up the whole folder from one message.
 */
import { DATASETS } from "./catalog.ts";
import type { RemoteFile } from "./remote_file.ts";
import { hfGpt2Files, openaiGpt2Files } from "./gpt2.ts";
import { GPT2_SIZES } from "../llm/model/gpt2_sizes.ts";

/** Every published group of files, each as mirror-relative paths. */
function knownGroups(): string[][] {
  const groups: string[][] = Object.values(DATASETS).map((file) => [file.path]);
  for (const size of GPT2_SIZES) {
    groups.push(Object.values(openaiGpt2Files(size)).map((file) => file.path));
    groups.push(Object.values(hfGpt2Files(size)).map((file) => file.path));
  }
  return groups;
}

/** The mirror-relative paths that belong together with `file` (at least its own). */
export function mirrorGroup(file: RemoteFile): string[] {
  return knownGroups().find((group) => group.includes(file.path)) ?? [file.path];
}

/** The lines telling an offline user how to provide `file` through a mirror folder. */
export function mirrorHint(file: RemoteFile, mirror?: string): string {
  const group = mirrorGroup(file);
  const folder = mirror ?? "<mirror>";
  const lines = [
    `to work offline, put ${group.length > 1 ? "these files" : "the file"} in a mirror folder`,
    ...group.map((path) => `  ${folder}/${path}`),
    `and pass --mirror ${folder} (or set GROUNDUP_MIRROR=${folder})` +
    (mirror ? `; ${mirror} does not have ${file.path}` : ""),
  ];
  return lines.join("\n");
}
