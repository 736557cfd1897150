// @ts-check
/** An artifact: its views (charts, tables), metrics, parameters, environment and files. */
import { api, artifactPath, artifactsPath, fileHref, reportHref } from "./api.js";
import { errorText, h, kvTable, messageOf, table } from "./dom.js";
import { judgeView, mmluView, pairwiseView, responsesView } from "./evaluation_views.js";
import { fmtBytes, fmtSeconds, fmtWhen, metricsText } from "./format.js";
import { historyView } from "./history_view.js";
import { isCurrent, view } from "./page.js";
import { artifactHref, artifactsPageHref, chatHref, pageLinks } from "./routes.js";
import { environmentRows } from "./run_summary.js";

/** @typedef {import("./types.js").Artifact} Artifact */
/** @typedef {import("./types.js").ArtifactList} ArtifactList */
/** @typedef {import("./types.js").ViewName} ViewName */

const PAGE = 100;

/** #/artifact/<stage>/<key> */
/** @param {number} token @param {string} ref */
export async function showArtifact(token, ref) {
  /** @type {Artifact} */
  const a = await api(artifactPath(ref));
  if (!isCurrent(token)) return;
  view.replaceChildren(
    h("h1", {}, a.stage, " ", h("small", { class: "muted" }, a.type)),
    h("p", { class: "key" }, "cache key ", h("code", {}, a.key)),
    artifactBody(a, token),
  );
}

/** #/artifacts: every finished artifact in the cache, newest first. */
/** @param {number} token @param {URLSearchParams} params */
export async function showArtifacts(token, params) {
  const offset = Number(params.get("offset") ?? 0);
  /** @type {ArtifactList} */
  const data = await api(artifactsPath(offset, PAGE));
  if (!isCurrent(token)) return;
  const rows = data.artifacts.map((a) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: artifactHref(a.ref) }, a.ref)),
      h("td", {}, a.type),
      h("td", { class: "when" }, fmtWhen(a.manifest.finishedAt)),
      h("td", { class: "num" }, fmtSeconds(a.manifest.seconds)),
      h("td", {}, a.views.join(", ")),
      h("td", { class: "metrics" }, metricsText(a.manifest.metrics)),
    )
  );
  const pages = pageLinks(offset, PAGE, data.artifacts.length, data.total);
  view.replaceChildren(
    h("h1", {}, "Artifacts"),
    table(["artifact", "type", "finished", "took", "views", "metrics"], rows, {
      class: "runs",
    }),
    h(
      "p",
      { class: "pager" },
      pages.newer !== undefined
        ? h("a", { href: artifactsPageHref(pages.newer) }, "← newer")
        : null,
      ` ${pages.first}–${pages.last} of ${data.total} `,
      pages.older !== undefined
        ? h("a", { href: artifactsPageHref(pages.older) }, "older →")
        : null,
    ),
  );
}

/** The views of an artifact, each loading on its own, then its metadata and files. */
/** @param {Artifact} a @param {number} token */
export function artifactBody(a, token) {
  const views = h("div", { class: "views" });
  for (const v of a.views) {
    const box = h(
      "section",
      { class: `view-${v}` },
      h("p", { class: "muted" }, `loading ${v}…`),
    );
    views.append(box);
    Promise.resolve().then(() => drawView(v, box, a.ref, token)).catch((e) =>
      box.replaceChildren(errorText(`${v}: ${messageOf(e)}`))
    );
  }
  return h("div", {}, views, metadata(a));
}

/**
 * @param {ViewName} v
 * @param {HTMLElement} box
 * @param {string} ref
 * @param {number} token
 * @returns {Promise<void> | void}
 */
function drawView(v, box, ref, token) {
  switch (v) {
    case "history":
      return historyView(box, [ref], token);
    case "mmlu":
      return mmluView(box, ref);
    case "judge":
      return judgeView(box, ref);
    case "pairwise":
      return pairwiseView(box, ref);
    case "responses":
      return responsesView(box, ref);
    case "report":
      return box.replaceChildren(
        h("h3", {}, "Report"),
        h(
          "p",
          {},
          h(
            "a",
            { href: reportHref(ref), target: "_blank" },
            "open report.html →",
          ),
        ),
      );
    case "model":
      return box.replaceChildren(
        h("h3", {}, "Model"),
        h("p", {}, h("a", { href: chatHref(ref) }, "chat with this model →")),
      );
  }
}

/** Metrics, parameters, environment and the files with their sizes. */
/** @param {Artifact} a */
function metadata(a) {
  return h(
    "div",
    { class: "grid" },
    h("div", {}, h("h3", {}, "Metrics"), kvTable(a.manifest.metrics)),
    h(
      "div",
      {},
      h("h3", {}, "Parameters"),
      h("pre", { class: "params" }, JSON.stringify(a.manifest.params, null, 2)),
    ),
    h(
      "div",
      {},
      h("h3", {}, "Environment"),
      kvTable(environmentRows(a.manifest)),
    ),
    h(
      "div",
      {},
      h("h3", {}, "Files"),
      table(
        ["file", "size"],
        a.files.map((f) =>
          h(
            "tr",
            {},
            h(
              "td",
              {},
              h(
                "a",
                { href: fileHref(a.ref, f.name), target: "_blank" },
                f.name,
              ),
            ),
            h("td", { class: "num" }, fmtBytes(f.size)),
          )
        ),
        { class: "files" },
      ),
    ),
  );
}
