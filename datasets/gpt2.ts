/**
 * Where OpenAI's pretrained GPT-2 weights live on the internet and in a mirror folder.
 *
 * Two publications of the same numbers:
 *   openai  the original TensorFlow checkpoints, seven files per size at
 *           https://openaipublic.blob.core.windows.net/gpt-2/models/<size>/<file>
 *           (mirror path `gpt2/<size>/<file>`);
 *   hf      Hugging Face's safetensors conversion, `model.safetensors` + `config.json` of
 *           `openai-community/<repo>` (mirror path `hf/openai-community/<repo>/<file>`).
 *
 * Sizes and checksums are pinned only where a real copy of the file was checked (see
 * ../shared/fixtures/gpt2-tokenizer/SOURCE.md and tf-checkpoint/gpt2_124M_index_only/): the
 * 124M release. Everything else is fetched unpinned; the TensorFlow reader still checks the
 * CRC32C of every tensor it reads, and the stage checks every shape.
 */
import { GPT2_SIZE_INFO, type Gpt2Size } from "../llm/model/gpt2_sizes.ts";
import type { RemoteFile } from "./remote_file.ts";

/** The seven files of each OpenAI release folder, as the book's download script fetches them. */
export const OPENAI_GPT2_FILE_NAMES = [
  "checkpoint",
  "encoder.json",
  "hparams.json",
  "model.ckpt.data-00000-of-00001",
  "model.ckpt.index",
  "model.ckpt.meta",
  "vocab.bpe",
] as const;
/** The files of one OpenAI GPT-2 release folder (TensorFlow checkpoint, hparams, tokenizer). */
export type OpenaiGpt2FileName = typeof OPENAI_GPT2_FILE_NAMES[number];

const OPENAI_BASE = "https://openaipublic.blob.core.windows.net/gpt-2/models";

/**
 * Checked copies of the 124M release (it was published as "117M" until 2019; same files). The
 * index's tensor offsets end at exactly 497,759,232 bytes, the data file's documented size.
 */
const PINNED_124M: Partial<Record<OpenaiGpt2FileName, { size: number; sha256?: string }>> = {
  "checkpoint": {
    size: 77,
    sha256: "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb",
  },
  "encoder.json": {
    size: 1042301,
    sha256: "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
  },
  "hparams.json": {
    size: 89,
    sha256: "097db6ed93a3d9b8a32532fca9e564c703bed00c73908ecc49d1b05db2199606",
  },
  "model.ckpt.index": {
    size: 5215,
    sha256: "71916f763f9746f9b2a06b12d91996cf1084ae008d0424543d39391c5f2dc687",
  },
  // No checked hash for the data file; every tensor in it carries a CRC32C the reader verifies.
  "model.ckpt.data-00000-of-00001": { size: 497759232 },
  "vocab.bpe": {
    size: 456318,
    sha256: "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
  },
};

/** The seven files of one OpenAI release, by file name. */
export function openaiGpt2Files(size: Gpt2Size): Record<OpenaiGpt2FileName, RemoteFile> {
  const files = {} as Record<OpenaiGpt2FileName, RemoteFile>;
  for (const name of OPENAI_GPT2_FILE_NAMES) {
    const pinned = size === "124M" ? PINNED_124M[name] : undefined;
    files[name] = {
      url: `${OPENAI_BASE}/${size}/${name}`,
      path: `gpt2/${size}/${name}`,
      ...(pinned ?? {}),
    };
  }
  return files;
}

/** The files of one Hugging Face GPT-2 repository that groundup reads. */
export const HF_GPT2_FILE_NAMES = ["config.json", "model.safetensors"] as const;
/** One of `HF_GPT2_FILE_NAMES`. */
export type HfGpt2FileName = typeof HF_GPT2_FILE_NAMES[number];

/** Hugging Face's safetensors copy of one size (unpinned: no checked copy was available). */
export function hfGpt2Files(size: Gpt2Size): Record<HfGpt2FileName, RemoteFile> {
  const repo = `openai-community/${GPT2_SIZE_INFO[size].hfRepo}`;
  const files = {} as Record<HfGpt2FileName, RemoteFile>;
  for (const name of HF_GPT2_FILE_NAMES) {
    files[name] = {
      url: `https://huggingface.co/${repo}/resolve/main/${name}`,
      path: `hf/${repo}/${name}`,
    };
  }
  return files;
}
