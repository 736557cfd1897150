/**
 * Streamed responses: server-sent events (OpenAI's `data:` lines ending with `[DONE]`, the
 * page's named events) and Ollama's NDJSON, over one writer with backpressure: generation waits
 * while the client has not taken the last piece, and a client that goes away aborts it.
 */

/** Writes one chunk of a streamed body; resolves when the connection can take more. */
export type Send = (chunk: string) => Promise<void>;

/**
 * A streamed response: `produce` writes chunks with `send`; the client going away (the stream
 * cancelled) aborts `abort`. An error `produce` throws becomes a last chunk, `onError(message)`.
 */
export function streamed(
  contentType: string,
  abort: AbortController,
  produce: (send: Send) => Promise<void>,
  onError: (message: string) => string,
): Response {
  const encoder = new TextEncoder();
  // Set while a piece waits for the connection to take the previous one: generation pauses
  // until the client reads (backpressure), which is also what gives the server's I/O a turn.
  let taken: PromiseWithResolvers<void> | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const send = async (chunk: string) => {
        controller.enqueue(encoder.encode(chunk));
        if ((controller.desiredSize ?? 1) <= 0 && !abort.signal.aborted) {
          taken = Promise.withResolvers();
          await taken.promise;
        }
      };
      produce(send).then(
        () => controller.close(),
        (error) => {
          if (abort.signal.aborted) return; // nobody is listening any more
          try {
            controller.enqueue(
              encoder.encode(onError(error instanceof Error ? error.message : String(error))),
            );
            controller.close();
          } catch { /* the stream is already gone */ }
        },
      );
    },
    pull() {
      taken?.resolve();
    },
    cancel() {
      abort.abort(new DOMException("the client disconnected", "AbortError"));
      taken?.resolve();
    },
  }, { highWaterMark: 1 });
  return new Response(body, {
    headers: { "content-type": contentType, "cache-control": "no-cache" },
  });
}

/** An unnamed server-sent event (OpenAI's chunks). */
export function dataEvent(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** A named server-sent event (the page's chat: meta, token, done, error). */
export function namedEvent(name: string, value: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(value)}\n\n`;
}

/** One line of NDJSON (Ollama's streamed replies). */
export function ndjsonLine(value: unknown): string {
  return JSON.stringify(value) + "\n";
}

/** OpenAI's stream: `produce`'s events, then `data: [DONE]`; an error as an error event. */
export function openaiStream(abort: AbortController, produce: (send: Send) => Promise<void>) {
  return streamed(
    "text/event-stream",
    abort,
    async (send) => {
      await produce(send);
      await send("data: [DONE]\n\n");
    },
    (message) => dataEvent({ error: { message, type: "server_error", param: null, code: null } }),
  );
}

/** Ollama's stream: NDJSON lines; an error as `{error}`. */
export function ollamaStream(abort: AbortController, produce: (send: Send) => Promise<void>) {
  return streamed(
    "application/x-ndjson",
    abort,
    produce,
    (message) => ndjsonLine({ error: message }),
  );
}
