// Streaming chat completions over server-sent events, read with fetch + ReadableStream.

/** An error the server reported, in OpenAI's envelope, or a transport failure. */
export class ServerError extends Error {
  constructor(message, { status = 0, type = "", code = null } = {}) {
    super(message);
    this.name = "ServerError";
    this.status = status;
    this.type = type;
    this.code = code;
  }
}

/** The ServerError of a non-2xx response (OpenAI's {"error": {...}} envelope when there is one). */
export async function errorFromResponse(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let type = "";
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      type = body.error.type || "";
      code = body.error.code ?? null;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ServerError(message, { status: response.status, type, code });
}

/**
 * The JSON payloads of an SSE body, one per `data:` event, until `data: [DONE]`.
 * @param {ReadableStream<Uint8Array>} body
 */
export async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      buffer = buffer.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * POST a streaming chat request and yield its `chat.completion.chunk`s.
 * Throws ServerError for an error response or an error event in the stream.
 */
export async function* streamChat(url, body, { headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...headers },
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ServerError(`cannot reach the server (${error.message})`);
  }
  if (!response.ok) throw await errorFromResponse(response);
  for await (const chunk of sseEvents(response.body)) {
    if (chunk.error) {
      throw new ServerError(chunk.error.message || "the server reported an error", {
        type: chunk.error.type || "",
        code: chunk.error.code ?? null,
      });
    }
    yield chunk;
  }
}
