// @ts-check
/** Loss curves: one training's history with its samples, or several overlaid (#/compare). */
import { api, artifactsPath, historyPath } from "./api.js";
import { downsampleNote, withRewardMargins } from "./chart_data.js";
import { drawLoss } from "./charts.js";
import { h } from "./dom.js";
import { fmtWhen, metricsText } from "./format.js";
import { isCurrent, view } from "./page.js";
import { compareHref } from "./routes.js";

/** @typedef {import("./types.js").ArtifactList} ArtifactList */
/** @typedef {import("./types.js").HistoryAnswer} HistoryAnswer */
/** @typedef {import("./types.js").HistorySeries} HistorySeries */

/** Evaluations per history the server keeps (downsampled, the shape kept). */
const POINTS = 1000;
const X_AXES = ["step", "epoch", "tokens_seen"];

/**
 * The loss of the histories `refs` against `xKey`, and the samples written after each epoch.
 * @param {HTMLElement} box
 * @param {string[]} refs
 * @param {number} token
 */
export async function historyView(box, refs, token, xKey = "step") {
  /** @type {HistoryAnswer} */
  const data = await api(historyPath(refs, POINTS));
  if (!isCurrent(token)) return;
  const chartBox = h("div", { class: "loss-chart" });
  const select = h(
    "select",
    {
      class: "x-axis",
      /** @param {Event} e */
      onchange: (e) =>
        historyView(
          box,
          refs,
          token,
          /** @type {HTMLSelectElement} */ (e.target).value,
        ),
    },
    X_AXES.map((k) => h("option", { value: k, selected: k === xKey }, k.replace("_", " "))),
  );
  // DPO runs also have reward margins (chosen − rejected reward): a second chart, as the book's.
  const withMargins = withRewardMargins(data.series);
  const marginBox = withMargins.length ? h("div", { class: "loss-chart" }) : null;
  const note = downsampleNote(data.series);
  box.replaceChildren(
    h("h3", {}, "Loss ", h("label", { class: "muted" }, "against ", select)),
    h(
      "div",
      { class: "loss-layout" },
      h(
        "div",
        {},
        chartBox,
        marginBox ? h("h3", {}, "Reward margins") : null,
        marginBox,
        note ? h("p", { class: "muted" }, note) : null,
      ),
      samplesList(data.series),
    ),
  );
  drawLoss(chartBox, data.series, xKey);
  if (marginBox) {
    drawLoss(marginBox, withMargins, xKey, "reward_margin", "reward margin");
  }
}

/** The texts each history's model wrote after each epoch. */
/** @param {HistorySeries[]} seriesList */
function samplesList(seriesList) {
  return h(
    "div",
    { class: "samples" },
    h("h3", {}, "Samples after each epoch"),
    seriesList.map((s) =>
      h(
        "div",
        {},
        seriesList.length > 1 ? h("h4", {}, s.label) : null,
        (s.samples ?? []).length
          ? h(
            "ol",
            {},
            (s.samples ?? []).map((x) =>
              h(
                "li",
                {},
                h("b", {}, `epoch ${x.epoch}`),
                h("small", { class: "muted" }, ` step ${x.step}`),
                h("p", {}, x.text),
              )
            ),
          )
          : h("p", { class: "muted" }, "no samples"),
      )
    ),
  );
}

/** #/compare?ref=..: pick trainings; their curves overlaid (the newest two at first). */
/** @param {number} token @param {URLSearchParams} params */
export async function showCompare(token, params) {
  const chosen = new Set(params.getAll("ref"));
  /** @type {ArtifactList} */
  const all = await api(artifactsPath(0, 200));
  if (!isCurrent(token)) return;
  const withHistory = all.artifacts.filter((a) => a.views.includes("history"));
  if (chosen.size === 0) {
    withHistory.slice(0, 2).forEach((a) => chosen.add(a.ref));
  }
  const pick = h(
    "div",
    { class: "picker" },
    withHistory.map((a) =>
      h(
        "label",
        {},
        h("input", {
          type: "checkbox",
          value: a.ref,
          checked: chosen.has(a.ref),
          /** @param {Event} e */
          onchange: (e) => {
            if (/** @type {HTMLInputElement} */ (e.target).checked) {
              chosen.add(a.ref);
            } else chosen.delete(a.ref);
            location.hash = compareHref(chosen);
          },
        }),
        ` ${a.ref} `,
        h(
          "small",
          { class: "muted" },
          `lr ${a.manifest.params?.lr ?? "?"} · ${
            metricsText({ val_loss: a.manifest.metrics.val_loss })
          } · ${fmtWhen(a.manifest.finishedAt)}`,
        ),
      )
    ),
  );
  const box = h("section", { class: "view-history" });
  view.replaceChildren(
    h("h1", {}, "Loss curves"),
    withHistory.length ? pick : h("p", { class: "muted" }, "no training histories in the cache"),
    box,
  );
  if (chosen.size) await historyView(box, [...chosen], token);
}
