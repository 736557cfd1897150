/**
 * The open models groundup knows by name (`deno task models`, `load-hf-model`'s `model:`), like
 * `litgpt download list`: each a Hugging Face repository at a pinned commit, with what a user
 * must know before downloading it (size, memory at fp32, gated or not, licence).
 *
 * Revisions: every entry pins a full commit hash, found in public code that pins the same
 * repository (`revision="<sha>"` or a Hub cache path `models--<org>--<name>/snapshots/<sha>`,
 * seen in several unrelated projects each). A commit can be re-checked without downloading
 * anything: `https://huggingface.co/api/models/<repo>/revision/<sha>` answers with that `sha`.
 * An entry that cannot be pinned says `revision: "main"` with `revisionPinned: false`; the
 * download then records the commit `main` resolved to.
 *
 * Parameter counts are exact (the sum of the tensors' sizes, tied embeddings once); they agree
 * with the rounded list in ../shared/REFERENCE.md ("Memory").
 */

/** The architecture family of a catalog model (the `family` of our GPTConfig). */
export type HfModelFamily = "llama" | "qwen3" | "gemma3" | "phi3" | "phi2";

/** One open model of the catalog. */
export interface HfCatalogModel {
  /** Our short name, e.g. `qwen3-0.6b` (what `model:` and `--model` take). */
  id: string;
  /** The Hugging Face repository, e.g. `Qwen/Qwen3-0.6B`. */
  repo: string;
  /** Architecture family (decides the loader). */
  family: HfModelFamily;
  /** The commit downloaded: a 40-hex commit hash when pinned, else a branch name. */
  revision: string;
  /** Whether `revision` is a pinned commit (false: a branch, resolved at download time). */
  revisionPinned: boolean;
  /** Parameters (tied embeddings counted once). */
  parameters: number;
  /** Bytes of the weights at fp32 (4 per parameter): what loading them for our engine takes. */
  fp32Bytes: number;
  /** The repository is gated: its licence must be accepted on the Hub and HF_TOKEN set. */
  gated: boolean;
  /** The licence the weights come under. */
  licence: string;
  /** Instruction/chat-tuned or a base model. */
  kind: "instruct" | "base";
}

type Entry = Omit<HfCatalogModel, "fp32Bytes" | "revisionPinned">;

const LLAMA_32 = "Llama 3.2 Community License";
const GEMMA = "Gemma Terms of Use";

const ENTRIES: Entry[] = [
  {
    id: "smollm2-135m",
    repo: "HuggingFaceTB/SmolLM2-135M",
    family: "llama",
    revision: "93efa2f097d58c2a74874c7e644dbc9b0cee75a2",
    parameters: 134_515_008,
    gated: false,
    licence: "Apache-2.0",
    kind: "base",
  },
  {
    id: "smollm2-135m-instruct",
    repo: "HuggingFaceTB/SmolLM2-135M-Instruct",
    family: "llama",
    revision: "12fd25f77366fa6b3b4b768ec3050bf629380bac",
    parameters: 134_515_008,
    gated: false,
    licence: "Apache-2.0",
    kind: "instruct",
  },
  {
    id: "gemma-3-270m",
    repo: "google/gemma-3-270m",
    family: "gemma3",
    revision: "9b0cfec892e2bc2afd938c98eabe4e4a7b1e0ca1",
    parameters: 268_098_176,
    gated: true,
    licence: GEMMA,
    kind: "base",
  },
  {
    id: "gemma-3-270m-it",
    repo: "google/gemma-3-270m-it",
    family: "gemma3",
    revision: "ac82b4e820549b854eebf28ce6dedaf9fdfa17b3",
    parameters: 268_098_176,
    gated: true,
    licence: GEMMA,
    kind: "instruct",
  },
  {
    id: "smollm2-360m",
    repo: "HuggingFaceTB/SmolLM2-360M",
    family: "llama",
    revision: "f8027fd0eaeea54caa13c31d31b9fdc459c38b49",
    parameters: 361_821_120,
    gated: false,
    licence: "Apache-2.0",
    kind: "base",
  },
  {
    id: "smollm2-360m-instruct",
    repo: "HuggingFaceTB/SmolLM2-360M-Instruct",
    family: "llama",
    revision: "a10cc1512eabd3dde888204e902eca88bddb4951",
    parameters: 361_821_120,
    gated: false,
    licence: "Apache-2.0",
    kind: "instruct",
  },
  {
    // Qwen3 releases its post-trained (chat, thinking) model under the plain name.
    id: "qwen3-0.6b",
    repo: "Qwen/Qwen3-0.6B",
    family: "qwen3",
    revision: "c1899de289a04d12100db370d81485cdf75e47ca",
    parameters: 596_049_920,
    gated: false,
    licence: "Apache-2.0",
    kind: "instruct",
  },
  {
    id: "gemma-3-1b-it",
    repo: "google/gemma-3-1b-it",
    family: "gemma3",
    revision: "dcc83ea841ab6100d6b47a070329e1ba4cf78752",
    parameters: 999_885_952,
    gated: true,
    licence: GEMMA,
    kind: "instruct",
  },
  {
    id: "llama-3.2-1b",
    repo: "meta-llama/Llama-3.2-1B",
    family: "llama",
    revision: "4e20de362430cd3b72f300e6b0f18e50e7166e08",
    parameters: 1_235_814_400,
    gated: true,
    licence: LLAMA_32,
    kind: "base",
  },
  {
    id: "llama-3.2-1b-instruct",
    repo: "meta-llama/Llama-3.2-1B-Instruct",
    family: "llama",
    revision: "9213176726f574b556790deb65791e0c5aa438b6",
    parameters: 1_235_814_400,
    gated: true,
    licence: LLAMA_32,
    kind: "instruct",
  },
  {
    id: "qwen3-1.7b",
    repo: "Qwen/Qwen3-1.7B",
    family: "qwen3",
    revision: "70d244cc86ccca08cf5af4e1e306ecf908b1ad5e",
    parameters: 1_720_574_976,
    gated: false,
    licence: "Apache-2.0",
    kind: "instruct",
  },
  {
    // The workshop's part 5b and 6 model (`litgpt download microsoft/phi-2`).
    id: "phi-2",
    repo: "microsoft/phi-2",
    family: "phi2",
    revision: "ef382358ec9e382308935a992d908de099b64c23",
    parameters: 2_779_683_840,
    gated: false,
    licence: "MIT",
    kind: "base",
  },
  {
    id: "llama-3.2-3b-instruct",
    repo: "meta-llama/Llama-3.2-3B-Instruct",
    family: "llama",
    revision: "0cb88a4f764b7a12671c53f0838cd831a0843b95",
    parameters: 3_212_749_824,
    gated: true,
    licence: LLAMA_32,
    kind: "instruct",
  },
  {
    // The workshop's recommended chat exercise.
    id: "phi-3-mini-4k-instruct",
    repo: "microsoft/Phi-3-mini-4k-instruct",
    family: "phi3",
    revision: "f39ac1d28e925b323eae81227eaba4464caced4e",
    parameters: 3_821_079_552,
    gated: false,
    licence: "MIT",
    kind: "instruct",
  },
  {
    // The workshop's judge (part 6).
    id: "llama-3-8b-instruct",
    repo: "meta-llama/Meta-Llama-3-8B-Instruct",
    family: "llama",
    revision: "8afb486c1db24fe5011ec46dfbe5b5dccdb575c2",
    parameters: 8_030_261_248,
    gated: true,
    licence: "Meta Llama 3 Community License",
    kind: "instruct",
  },
];

/** A full git commit hash (what a pinned revision is). */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

/** The catalog, smallest first. */
export const HF_MODELS: readonly HfCatalogModel[] = ENTRIES.map((entry) => ({
  ...entry,
  revisionPinned: isCommitHash(entry.revision),
  fp32Bytes: 4 * entry.parameters,
}));

/** Every catalog id. */
export function hfModelIds(): string[] {
  return HF_MODELS.map((model) => model.id);
}

/**
 * The catalog entry named by `name`: our id (`qwen3-0.6b`) or its repository
 * (`Qwen/Qwen3-0.6B`), case-insensitively; undefined when there is none.
 */
export function findHfModel(name: string): HfCatalogModel | undefined {
  const wanted = name.toLowerCase();
  return HF_MODELS.find((model) => model.id === wanted || model.repo.toLowerCase() === wanted);
}
