// @ts-check
/**
 * The chat playground's logic: what to send, what the template panel says, and how the
 * server's events build a reply. No DOM here.
 */
import { fmtSeconds } from "./format.js";

/** @typedef {import("./types.js").ChatModel} ChatModel */
/** @typedef {import("./types.js").ChatMessage} ChatMessage */
/** @typedef {import("./types.js").ChatEvent} ChatEvent */
/** @typedef {import("./sse.js").ServerEvent} ServerEvent */

/** @param {ChatModel} m */
export const modelLabel = (m) =>
  `${m.ref} (${m.type}, ${m.config?.n_layers ?? "?"} layers, emb ${m.config?.emb_dim ?? "?"})`;

/**
 * What the template panel says before the first reply (each reply's meta event then shows the
 * prompt itself). `choice` is the menu's value: "auto" means the model's own template.
 * @param {string} choice
 * @param {ChatModel | undefined} model
 */
export function templateDescription(choice, model) {
  const t = choice === "auto" ? model?.template ?? "none" : choice;
  return t === "none"
    ? "{the conversation so far}\n{your message}   (no template: the model continues the text)"
    : t === "jinja"
    ? "the model's own chat template: the prompt sent is shown here with each reply"
    : `the ${t} template, the earlier turns as examples: the prompt sent is shown here with ` +
      "each reply";
}

/**
 * The sampling settings of the form.
 * @typedef {{temperature: number, top_k: number, max_tokens: number, seed: number}} Sampling
 */

/** The settings' names, defaults and input limits, in the form's order. */
export const SAMPLING_INPUTS = [
  { name: "temperature", value: 0.7, attrs: { min: 0, max: 5, step: 0.1 } },
  {
    name: "top_k",
    value: 50,
    attrs: { min: 0, step: 1, title: "0: no top-k" },
  },
  { name: "max_tokens", value: 60, attrs: { min: 1, max: 1024, step: 1 } },
  { name: "seed", value: 123, attrs: { min: 0, step: 1 } },
];

/**
 * POST /api/ui/chat's body: the whole conversation (it ends with the user's new message).
 * @param {string} model the artifact ref
 * @param {ChatMessage[]} messages
 * @param {string} template
 * @param {Sampling} sampling
 */
export function chatRequest(model, messages, template, sampling) {
  return { model, messages, template, ...sampling };
}

/**
 * A reply as its events arrive: the text so far, how many pieces it came in, the prompt the
 * server built (from the meta event), and the status line.
 * @typedef {{answer: string, pieces: number, prompt: string | undefined, status: string}} Reply
 */

/** @type {Reply} */
export const WAITING = {
  answer: "",
  pieces: 0,
  prompt: undefined,
  status: "waiting for the model…",
};

/**
 * The reply after one more event; an error event throws its message.
 * @param {Reply} reply
 * @param {ServerEvent} serverEvent
 * @returns {Reply}
 */
export function applyChatEvent(reply, serverEvent) {
  const e = /** @type {ChatEvent} */ (serverEvent);
  switch (e.event) {
    case "meta":
      return {
        ...reply,
        prompt: e.data.prompt,
        status: `generating (template ${e.data.template})…`,
      };
    case "token":
      return {
        ...reply,
        answer: reply.answer + e.data.text,
        pieces: reply.pieces + 1,
      };
    case "done":
      return {
        ...reply,
        status: `${e.data.tokens} tokens in ${fmtSeconds(e.data.seconds)} (${
          e.data.stopped.replaceAll("_", " ")
        })`,
      };
    case "error":
      throw new Error(e.data.error);
  }
  return reply;
}
