// @ts-check
/**
 * Server-sent events from a fetch response (EventSource cannot POST). Only what the server
 * writes (server/sse.ts namedEvent): blocks of "event: <name>" and "data: <JSON>" lines, each
 * block ended by a blank line. No DOM here.
 */

/** @typedef {{event: string, data: unknown}} ServerEvent */

/**
 * Splits the complete events off the front of `buffer`: the events, and the unfinished rest to
 * keep for the next chunk. An event without a name is "message"; one without data has null.
 * @param {string} buffer
 * @returns {{events: ServerEvent[], rest: string}}
 */
export function splitEvents(buffer) {
  /** @type {ServerEvent[]} */
  const events = [];
  let cut;
  while ((cut = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    events.push({ event, data: data ? JSON.parse(data) : null });
  }
  return { events, rest: buffer };
}

/**
 * Reads the event stream of `body` to its end, calling onEvent for each event as it arrives;
 * an error onEvent throws ends the reading.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(event: ServerEvent) => void} onEvent
 */
export async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // stream: a character split between two chunks waits for its second half.
    const { events, rest } = splitEvents(
      buffer + decoder.decode(value, { stream: true }),
    );
    buffer = rest;
    for (const event of events) onEvent(event);
  }
}
