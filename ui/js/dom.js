// @ts-check
/** Building elements: h() for HTML, svg() for SVG, and the page's small shared pieces. */
import { fmtNumber, progressPercent, progressText } from "./format.js";

/** @typedef {import("./types.js").ProgressState} ProgressState */

/**
 * A child of h(): a node, a text (numbers are written as text), nothing (skipped), or a list
 * of children (nested lists are flattened).
 * @typedef {Node | string | number | null | undefined | false | readonly unknown[]} Child
 */

/**
 * Attributes of h(): on<event> adds a listener, dataset fills data-*, true sets an empty
 * attribute, and undefined, null or false leave it out.
 * @typedef {Record<string, unknown>} Attributes
 */

/**
 * Builds an element: h("td", {class: "x"}, "text", child). Text is always set as text.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attributes} [attrs]
 * @param {Child[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) {
      el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    } else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/**
 * Builds an SVG element: svg("rect", {width: 10}, child). Every attribute is set as text.
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {Child[]} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS(
    "http://www.w3.org/2000/svg",
    tag,
  ));
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

/** @param {Element} el @param {Child[]} children */
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(
      child instanceof Node ? child : document.createTextNode(String(child)),
    );
  }
}

/**
 * @param {string[]} headers
 * @param {Child[]} rows
 * @param {Attributes} [attrs]
 */
export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows),
  );
}

/** A two-column table of an object's entries (objects as JSON), or "none". */
/** @param {Record<string, unknown> | undefined} object */
export function kvTable(object) {
  const rows = Object.entries(object ?? {}).map(([k, v]) =>
    h(
      "tr",
      {},
      h("th", {}, k),
      h(
        "td",
        {},
        typeof v === "object" && v !== null ? JSON.stringify(v) : fmtNumber(v),
      ),
    )
  );
  return rows.length ? h("table", { class: "kv" }, h("tbody", {}, rows)) : h("p", {
    class: "muted",
  }, "none");
}

/** A run's status or a step's outcome, coloured by the style sheet. */
/** @param {string} outcome */
export function badge(outcome) {
  return h("span", { class: `badge ${outcome}` }, outcome);
}

/** @param {ProgressState | undefined} p */
export function progressBar(p) {
  return h(
    "div",
    { class: "progress", title: progressText(p) },
    h("div", {
      class: "bar",
      style: `width:${progressPercent(p).toFixed(1)}%`,
    }),
    h("span", {}, progressText(p)),
  );
}

/** An error message in place of what could not be shown. */
/** @param {string} message */
export function errorText(message) {
  return h("p", { class: "error" }, message);
}

/** The message of something thrown. */
/** @param {unknown} e */
export function messageOf(e) {
  return e instanceof Error ? e.message : String(e);
}
