/**
 * A judge server scripted by the test, on loopback: it answers Ollama's /api/tags and
 * /api/chat and OpenAI's /v1/chat/completions with whatever `reply` returns for each request,
 * and records every request (path, headers, body) for the test to inspect.
 */
export interface SeenRequest {
  path: string;
  authorization: string | null;
  body: Record<string, unknown>;
  /** The user message's text. */
  content: string;
}

export interface ScriptedJudge {
  url: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

/** A chat reply in the API's shape (chosen by the request's path). */
export function chatReply(path: string, content: string, model = "scripted-judge"): Response {
  return Response.json(
    path === "/api/chat"
      ? {
        model,
        created_at: new Date().toISOString(),
        message: { role: "assistant", content },
        done: true,
      }
      : {
        id: "x",
        object: "chat.completion",
        model,
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
      },
  );
}

export function scriptedJudge(
  reply: (request: SeenRequest, n: number) => Response | Promise<Response>,
  options: { digest?: string; models?: string[]; port?: number } = {},
): ScriptedJudge {
  const requests: SeenRequest[] = [];
  const listen = { hostname: "127.0.0.1", port: options.port ?? 0, onListen() {} };
  const server = Deno.serve(listen, async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/api/tags") {
      return Response.json({
        models: (options.models ?? ["llama3:latest"]).map((name) => ({
          name,
          model: name,
          digest: options.digest ?? "d1g3st",
        })),
      });
    }
    const body = await request.json();
    const seen: SeenRequest = {
      path,
      authorization: request.headers.get("authorization"),
      body,
      content: body.messages?.[0]?.content ?? "",
    };
    requests.push(seen);
    return await reply(seen, requests.length - 1);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    close: () => server.shutdown(),
  };
}
