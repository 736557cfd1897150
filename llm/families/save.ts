/**
 * Our model back in Hugging Face's layout: the family's weight table read from our side (the
 * same table the loader reads from HF's side, so the two can never disagree), fused tensors
 * (Phi-3's `qkv_proj`, `gate_up_proj`) stacked back from our separate ones.
 *
 * `saveHfModel` writes a model folder that `loadHfModel` / `openModelFolder` (and transformers)
 * read: config.json (the base's, with the dtype and head tying of what is written),
 * model.safetensors with HF names, and the base's tokenizer files.
 */
import { join } from "node:path";
import { resolveConfig } from "../model/config.ts";
import type { GPTModel } from "../model/gpt.ts";
import { getStateDict } from "../model/weights_io.ts";
import { type NamedTensor, writeSafetensorsFile } from "../weights/safetensors.ts";
import type { ModelFamily } from "./family.ts";
import { HF_CONFIG_FILE, HF_WEIGHTS_FILE, readHfConfig } from "./load.ts";

/** Where one of our tensors lives in the HF checkpoint: a tensor, or a row block of a fused one. */
export interface HfPlace {
  /** The HF tensor name, e.g. `model.layers.3.self_attn.q_proj.weight`. */
  hf: string;
  /** Our tensors stacked (along rows) in that HF tensor, in order; ours is one of them. */
  parts: string[];
}

/** Our tensor name → its place in the HF checkpoint, for a model with `layers` blocks. */
export function hfPlaces(family: ModelFamily, layers: number): Map<string, HfPlace> {
  const places = new Map<string, HfPlace>();
  for (const rule of family.weightRules) {
    const ours = typeof rule.ours === "string" ? [rule.ours] : [...rule.ours];
    const blocks = rule.hf.includes("{i}") ? [...Array(layers).keys()] : [-1];
    for (const i of blocks) {
      const fill = (s: string) => s.replaceAll("{i}", String(i));
      const place = { hf: fill(rule.hf), parts: ours.map(fill) };
      for (const part of place.parts) places.set(part, place);
    }
  }
  return places;
}

/**
 * Our state_dict under the family's HF names. A tied head is stored once (as transformers does),
 * fused tensors are our parts stacked along the rows.
 */
export function toHfStateDict(
  ours: ReadonlyMap<string, NamedTensor>,
  family: ModelFamily,
  layers: number,
  tiedHead: boolean,
): Map<string, NamedTensor> {
  const places = hfPlaces(family, layers);
  const tensors = new Map<string, NamedTensor>();
  for (const [name, tensor] of ours) {
    if (tiedHead && name === "out_head.weight") continue;
    const place = places.get(name);
    if (!place) throw new Error(`no ${family.name} (Hugging Face) name for our tensor "${name}"`);
    if (place.parts.length === 1) {
      tensors.set(place.hf, tensor);
      continue;
    }
    if (tensors.has(place.hf)) continue;
    const parts = place.parts.map((part) => {
      const t = ours.get(part);
      if (!t) throw new Error(`"${place.hf}" needs our "${part}", which the model lacks`);
      return t;
    });
    const data = new Float32Array(parts.reduce((n, t) => n + t.data.length, 0));
    let offset = 0;
    for (const t of parts) data.set(t.data, offset), offset += t.data.length;
    const rows = parts.reduce((n, t) => n + t.shape[0], 0);
    tensors.set(place.hf, { shape: [rows, ...parts[0].shape.slice(1)], data });
  }
  return tensors;
}

/** What `saveHfModel` copies from the base folder besides config.json. */
const COPIED_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];

/**
 * Writes `model` into `dir` in HF layout, as a model of `family` made from the HF folder
 * `baseDir`: its config.json (dtype float32, `tie_word_embeddings` as the model is), the weights
 * under HF names, its tokenizer and generation files. The weights file is written to a temporary
 * name and renamed; config.json goes last, so a folder with it is complete.
 */
export async function saveHfModel(
  dir: string,
  model: GPTModel,
  family: ModelFamily,
  baseDir: string,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const hfConfig = await readHfConfig(baseDir);
  const tensors = toHfStateDict(
    await getStateDict(model),
    family,
    resolveConfig(model.config).n_layers,
    model.tiedHead,
  );
  await writeSafetensorsFile(join(dir, HF_WEIGHTS_FILE), tensors, { format: "pt" });
  for (const file of COPIED_FILES) {
    await Deno.copyFile(join(baseDir, file), join(dir, file)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
  const config: Record<string, unknown> = {
    ...hfConfig,
    tie_word_embeddings: model.tiedHead,
  };
  // What was written is float32, whatever the base's checkpoint held.
  if ("dtype" in config) config.dtype = "float32";
  else config.torch_dtype = "float32";
  const path = join(dir, HF_CONFIG_FILE);
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(temp, JSON.stringify(config, null, 2) + "\n");
  await Deno.rename(temp, path);
}
