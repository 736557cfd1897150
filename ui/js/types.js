// @ts-check
/**
 * The JSON the page reads, one typedef per answer of server/ui_api.ts (that file builds these
 * objects from the cache's files; keep the two in step). Only types: this module has no code.
 */

/**
 * A unit of work's progress, as the runner records it: util/progress.ts ProgressState (not
 * imported: that module is Deno code; tests/ui/page_logic_test.ts checks the two agree).
 * @typedef {object} ProgressState
 * @property {string} label what is being done ("training")
 * @property {string} unit what is counted ("steps")
 * @property {number} done
 * @property {number} total
 * @property {Record<string, number | string>} [values] the latest headline values
 * @property {number} elapsedSeconds
 * @property {number | null} etaSeconds null while the rate is unknown
 */

/** A stage's headline numbers (the manifest's and the run record's `metrics`). */
/** @typedef {Record<string, number | string>} Metrics */

/**
 * One step of a run. `outcome`: "ran", "cached", "skipped", "failed", "pending", "running" or
 * "interrupted" (the run died while the step was running).
 * @typedef {object} RunStep
 * @property {string} stage
 * @property {string} type
 * @property {string} [key]
 * @property {string} [ref] "<stage>/<first 16 digits of the key>"
 * @property {string[]} [needs] the stages it reads from
 * @property {string} outcome
 * @property {number} [seconds]
 * @property {Metrics} metrics
 * @property {string} [error]
 * @property {ProgressState} [progress] while running
 * @property {Artifact} [artifact] only in GET /api/ui/runs/<id>, when the artifact is finished
 */

/**
 * A run record. `status`: "running", "ok", "failed" or "interrupted".
 * @typedef {object} RunSummary
 * @property {string} id
 * @property {string} pipeline
 * @property {string} [file]
 * @property {string} status
 * @property {string} [startedAt]
 * @property {string} [finishedAt]
 * @property {string} [updatedAt]
 * @property {RunStep[]} steps
 * @property {Headline[]} [headline] in the runs list: the numbers the run is judged by
 */

/**
 * A headline of a run: numbers from the kind of artifact a stage wrote (final losses, MMLU
 * accuracy, judge means, the pairwise win rate).
 * @typedef {{stage: string, kind?: string, metrics: Record<string, number | string | null>}} Headline
 */

/** GET /api/ui/runs/<id>: the run with each step's artifact and the edges [from, to]. */
/** @typedef {RunSummary & {edges: [string, string][]}} RunDetail */

/** GET /api/ui/runs?offset&limit */
/** @typedef {{total: number, offset: number, limit: number, runs: RunSummary[]}} RunList */

/** What the page can show of an artifact; each has its own endpoint (the model: the chat). */
/** @typedef {"history" | "mmlu" | "judge" | "pairwise" | "responses" | "report" | "model"} ViewName */

/**
 * An artifact's manifest, as far as the page shows it.
 * @typedef {object} Manifest
 * @property {Record<string, unknown>} [params]
 * @property {Record<string, unknown>} [inputs]
 * @property {Record<string, unknown>} environment
 * @property {Metrics} metrics
 * @property {Record<string, string>} [versions]
 * @property {string} [startedAt]
 * @property {string} [finishedAt]
 * @property {number} [seconds]
 */

/**
 * GET /api/ui/artifact?ref=<stage>/<key>
 * @typedef {object} Artifact
 * @property {string} ref
 * @property {string} stage
 * @property {string} type
 * @property {string} key
 * @property {Manifest} manifest
 * @property {{name: string, size: number}[]} files
 * @property {ViewName[]} views
 */

/** GET /api/ui/artifacts?stage&offset&limit */
/** @typedef {{total: number, offset: number, limit: number, artifacts: Artifact[]}} ArtifactList */

/**
 * A history's columns, one value per (downsampled) evaluation; null where it has none.
 * step, epoch, tokens_seen, train_loss, val_loss; DPO adds train_/val_reward_margin.
 * @typedef {Record<string, (number | null)[] | undefined> & {step: (number | null)[]}} HistoryColumns
 */

/** A text the model wrote after an epoch. */
/** @typedef {{epoch: number, step: number, text: string}} Sample */

/**
 * One training history; `total` evaluations, drawn with `columns.step.length` of them.
 * @typedef {object} HistorySeries
 * @property {string} ref
 * @property {string} label
 * @property {number} total
 * @property {HistoryColumns} columns
 * @property {Sample[]} [samples]
 */

/** GET /api/ui/history?ref=..&ref=..&points=N */
/** @typedef {{points: number, series: HistorySeries[]}} HistoryAnswer */

/**
 * GET /api/ui/mmlu?ref: one row per task; groups after the tasks.
 * @typedef {{task: string, group: boolean, acc: number | null, stderr: number | null,
 *   acc_norm: number | null, n: number | null}} MmluRow
 */
/** @typedef {{rows: MmluRow[], model?: unknown}} MmluAnswer */

/**
 * A judged response field: the mean score and a histogram of ten bins of ten points.
 * @typedef {object} JudgedField
 * @property {string} field
 * @property {string} [judge]
 * @property {number | null} mean
 * @property {number | null} stderr
 * @property {number} scored
 * @property {number} total
 * @property {number[]} histogram
 * @property {number} unscored
 */
/** GET /api/ui/judge?ref */
/** @typedef {{lenient: boolean, models: JudgedField[]}} JudgeAnswer */

/**
 * A pairwise comparison of response fields a and b (numbers null where the file had none).
 * @typedef {object} Comparison
 * @property {unknown} a
 * @property {unknown} b
 * @property {number | null} win_rate
 * @property {number | null} wins
 * @property {number | null} ties
 * @property {number | null} losses
 * @property {number | null} judged
 * @property {number | null} total
 * @property {number | null} contradictions
 * @property {number | null} contradiction_rate
 */
/** GET /api/ui/pairwise?ref */
/** @typedef {{comparisons: Comparison[]}} PairwiseAnswer */

/** A response with the judge's score (null: no score) and reply (null: not judged). */
/** @typedef {{text: string, score: number | null, reply: string | null}} JudgedResponse */

/**
 * @typedef {object} ResponseRow
 * @property {number} index
 * @property {string} instruction
 * @property {string} input
 * @property {string} output
 * @property {Record<string, JudgedResponse | undefined>} responses by field
 */

/**
 * GET /api/ui/responses?ref&field&min&max&offset&limit
 * @typedef {object} ResponsesAnswer
 * @property {string[]} fields
 * @property {boolean} scored
 * @property {string | null} judge
 * @property {number} total
 * @property {number} matched
 * @property {ResponseRow[]} rows
 */

/**
 * A model the chat can load; `template` is its own chat format ("none": plain text).
 * @typedef {object} ChatModel
 * @property {string} ref
 * @property {string} stage
 * @property {string} type
 * @property {string} template
 * @property {{n_layers?: number, emb_dim?: number}} [config]
 */
/** GET /api/ui/models: the models and the template menu ("auto": the model's own). */
/** @typedef {{templates: string[], models: ChatModel[]}} ModelsAnswer */

/** POST /api/ui/chat: a chat message. */
/** @typedef {{role: "user" | "assistant", content: string}} ChatMessage */

/**
 * The chat's server-sent events, in order: meta, token..., then done or error.
 * @typedef {{event: "meta", data: {prompt: string, template: string, queued?: number}}
 *   | {event: "token", data: {text: string}}
 *   | {event: "done", data: {tokens: number, seconds: number, stopped: string}}
 *   | {event: "error", data: {error: string}}} ChatEvent
 */

export {};
