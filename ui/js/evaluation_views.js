// @ts-check
/** Evaluations of an artifact: MMLU, the judge's scores, pairwise preference, the responses. */
import { api, evaluationPath, RESPONSES_PAGE, responsesPath } from "./api.js";
import { scoreClass } from "./chart_data.js";
import { drawScoreHistogram } from "./charts.js";
import { h, table } from "./dom.js";

/** @typedef {import("./types.js").MmluAnswer} MmluAnswer */
/** @typedef {import("./types.js").JudgeAnswer} JudgeAnswer */
/** @typedef {import("./types.js").PairwiseAnswer} PairwiseAnswer */
/** @typedef {import("./types.js").Comparison} Comparison */
/** @typedef {import("./types.js").ResponsesAnswer} ResponsesAnswer */
/** @typedef {import("./types.js").ResponseRow} ResponseRow */
/** @typedef {import("./api.js").ResponsesFilter} ResponsesFilter */

/** A number to `digits` decimals, or nothing. */
/** @param {number | null} x @param {number} digits */
const fixed = (x, digits) => (x === null ? "" : x.toFixed(digits));

/** @param {number} rate 0 to 1 */
const percent = (rate) => `${(100 * rate).toFixed(1)} %`;

/** Accuracy per task, groups last. */
/** @param {HTMLElement} box @param {string} ref */
export async function mmluView(box, ref) {
  /** @type {MmluAnswer} */
  const data = await api(evaluationPath("mmlu", ref));
  box.replaceChildren(
    h("h3", {}, "MMLU"),
    table(
      ["task", "accuracy", "± stderr", "questions"],
      data.rows.map((r) =>
        h(
          "tr",
          { class: r.group ? "group" : "" },
          h("td", {}, r.task),
          h("td", { class: "num" }, fixed(r.acc, 4)),
          h("td", { class: "num" }, fixed(r.stderr, 4)),
          h("td", { class: "num" }, r.n ?? ""),
        )
      ),
      { class: "mmlu" },
    ),
  );
}

/** The mean score of each response field, and a histogram of the scores. */
/** @param {HTMLElement} box @param {string} ref */
export async function judgeView(box, ref) {
  /** @type {JudgeAnswer} */
  const data = await api(evaluationPath("judge", ref));
  const chartEl = h("div", { class: "histogram" });
  box.replaceChildren(
    h("h3", {}, "Judge scores"),
    table(
      ["response field", "mean", "± stderr", "scored", "judge"],
      data.models.map((m) =>
        h(
          "tr",
          {},
          h("td", {}, m.field),
          h("td", { class: "num" }, fixed(m.mean, 2)),
          h("td", { class: "num" }, fixed(m.stderr, 2)),
          h("td", { class: "num" }, `${m.scored} / ${m.total}`),
          h("td", {}, typeof m.judge === "string" ? m.judge : ""),
        )
      ),
      { class: "judge" },
    ),
    chartEl,
  );
  drawScoreHistogram(chartEl, data.models);
}

/** How often the judge preferred A to B, and how often swapping them changed its mind. */
/** @param {HTMLElement} box @param {string} ref */
export async function pairwiseView(box, ref) {
  /** @type {PairwiseAnswer} */
  const data = await api(evaluationPath("pairwise", ref));
  box.replaceChildren(
    h("h3", {}, "Pairwise preference"),
    table(
      [
        "A",
        "B",
        "A's win rate (ties ½)",
        "wins / ties / losses",
        "judged",
        "order flips disagree",
      ],
      data.comparisons.map(comparisonRow),
    ),
  );
}

/** @param {Comparison} c */
function comparisonRow(c) {
  const rate = c.win_rate;
  return h(
    "tr",
    {},
    h("td", {}, String(c.a ?? "")),
    h("td", {}, String(c.b ?? "")),
    h(
      "td",
      { class: "num" },
      typeof rate === "number" ? percent(rate) : "",
      typeof rate === "number"
        ? h(
          "div",
          { class: "winbar" },
          h("div", { style: `width:${(100 * rate).toFixed(1)}%` }),
        )
        : null,
    ),
    h(
      "td",
      { class: "num" },
      [c.wins, c.ties, c.losses].map((x) => x ?? "?").join(" / "),
    ),
    h("td", { class: "num" }, `${c.judged ?? "?"} / ${c.total ?? "?"}`),
    h(
      "td",
      { class: "num" },
      typeof c.contradiction_rate === "number"
        ? `${c.contradictions} (${percent(c.contradiction_rate)})`
        : "",
    ),
  );
}

/**
 * The responses a page at a time, each field's text with its score; filtered by score.
 * @param {HTMLElement} box
 * @param {string} ref
 * @param {ResponsesFilter} state
 * @returns {Promise<void>}
 */
export async function responsesView(
  box,
  ref,
  state = { offset: 0, min: "", max: "", field: "" },
) {
  /** @type {ResponsesAnswer} */
  const data = await api(responsesPath(ref, state));
  /** @param {Partial<ResponsesFilter>} patch */
  const show = (patch) => responsesView(box, ref, { ...state, ...patch });
  const { offset } = state;
  box.replaceChildren(
    h(
      "h3",
      {},
      data.judge ? `Responses, scored by ${data.judge}` : "Responses",
    ),
    responseFilters(data, state, show),
    h(
      "p",
      { class: "muted" },
      `${data.matched} of ${data.total} entries${data.matched !== data.total ? " match" : ""}`,
    ),
    table(
      ["#", "instruction", "reference output", ...data.fields],
      data.rows.map((r) => responseRow(r, data.fields)),
      { class: "responses" },
    ),
    h(
      "p",
      { class: "pager" },
      offset > 0
        ? h("button", {
          onclick: () => show({ offset: offset - RESPONSES_PAGE }),
        }, "← previous")
        : null,
      ` ${data.matched ? offset + 1 : 0}–${offset + data.rows.length} `,
      offset + RESPONSES_PAGE < data.matched
        ? h("button", {
          onclick: () => show({ offset: offset + RESPONSES_PAGE }),
        }, "next →")
        : null,
    ),
  );
}

/**
 * The filter: a response field and a range of its scores; submitting shows the first page.
 * @param {ResponsesAnswer} data
 * @param {ResponsesFilter} state
 * @param {(patch: Partial<ResponsesFilter>) => void} show
 */
function responseFilters(data, state, show) {
  const field = state.field || data.fields[0];
  return h(
    "form",
    {
      class: "filters",
      /** @param {SubmitEvent} e */
      onsubmit: (e) => {
        e.preventDefault();
        const f = new FormData(/** @type {HTMLFormElement} */ (e.target));
        const text = (/** @type {string} */ name) => String(f.get(name) ?? "");
        show({
          offset: 0,
          min: text("min"),
          max: text("max"),
          field: text("field"),
        });
      },
    },
    "score of ",
    h(
      "select",
      { name: "field" },
      data.fields.map((f) => h("option", { value: f, selected: f === field }, f)),
    ),
    " from ",
    h("input", {
      name: "min",
      type: "number",
      value: state.min,
      placeholder: "0",
      size: 4,
    }),
    " to ",
    h("input", {
      name: "max",
      type: "number",
      value: state.max,
      placeholder: "100",
      size: 4,
    }),
    " ",
    h("button", {}, "filter"),
    data.scored ? null : h(
      "small",
      { class: "muted" },
      " (no scores yet: nothing to filter on)",
    ),
  );
}

/** An entry: the instruction, the reference output, and each field's response and score. */
/** @param {ResponseRow} r @param {string[]} fields */
function responseRow(r, fields) {
  return h(
    "tr",
    { class: "response-row" },
    h("td", { class: "num" }, r.index + 1),
    h(
      "td",
      {},
      h("p", {}, r.instruction),
      r.input ? h("p", { class: "input" }, r.input) : null,
    ),
    h("td", { class: "reference" }, r.output),
    fields.map((f) => {
      const x = r.responses[f];
      return h(
        "td",
        {},
        x ? x.text : "",
        x && x.score !== null
          ? h(
            "span",
            {
              class: `score ${scoreClass(x.score)}`,
              title: `the judge's reply: ${x.reply}`,
            },
            String(x.score),
          )
          : x && x.reply !== null
          ? h("span", {
            class: "score unscored",
            title: `the judge's reply: ${x.reply}`,
          }, "?")
          : null,
      );
    }),
  );
}
