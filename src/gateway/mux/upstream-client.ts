import { isEventStream } from '../response-tap.ts';
import { isMessageEvent, parseEvents } from '../sse.ts';
import { readLimited, upstreamError, UpstreamError } from '../filters/proxy.ts';

/** One upstream of a multiplexed route. */
export interface MuxUpstream {
  name: string;
  url: URL;
}

export interface UpstreamAnswer {
  /** The upstream's `Mcp-Session-Id`, if it gave one. */
  sessionId?: string;
  status: number;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/**
 * The gateway's own JSON-RPC exchanges with one upstream (initialize, the lists it merges, the
 * notifications it fans out, DELETE): fetch, so it runs on every runtime. The answer may be JSON
 * or an SSE stream (the response to `id` is taken from it); read up to the rewrite size limit.
 */
export async function exchange(
  fetchImpl: typeof fetch,
  upstream: MuxUpstream,
  request: { method: 'POST' | 'DELETE'; message?: { jsonrpc: '2.0'; id?: string | number; method?: string; params?: unknown; result?: unknown; error?: unknown }; headers: Record<string, string>; timeoutMs: number },
): Promise<UpstreamAnswer> {
  const headers: Record<string, string> = { ...request.headers };
  for (const [name, value] of Object.entries(headers)) if (value === '') delete headers[name];
  if (request.message) {
    headers['content-type'] = 'application/json';
    headers.accept = 'application/json, text/event-stream';
    // A request or notification names its method (2026-07-28 Mcp-Method); a client's answer has none.
    if (request.message.method) headers['mcp-method'] = request.message.method;
    else delete headers['mcp-method'];
    delete headers['mcp-name'];
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new DOMException(`no answer in ${request.timeoutMs} ms`, 'TimeoutError')), request.timeoutMs);
  let response: Response;
  let text: string;
  try {
    response = await fetchImpl(upstream.url, { method: request.method, headers, body: request.message ? JSON.stringify(request.message) : undefined, redirect: 'manual', signal: abort.signal });
    text = await readLimited(response.body);
  } catch (error) {
    throw error instanceof UpstreamError ? error : upstreamError(error);
  } finally {
    clearTimeout(timer);
  }
  const answer: UpstreamAnswer = { status: response.status, sessionId: response.headers.get('mcp-session-id') ?? undefined };
  const id = request.message?.id;
  if (id === undefined || request.message?.method === undefined) return answer;
  const found = findResponse(text, response.headers.get('content-type') ?? undefined, id);
  if (found) {
    answer.result = found.result;
    answer.error = found.error;
  } else if (response.ok) {
    throw new UpstreamError(502, 'upstream_unavailable', `upstream ${upstream.name} answered ${request.message!.method!} without a response`);
  }
  return answer;
}

function findResponse(text: string, contentType: string | undefined, id: string | number): { result?: unknown; error?: UpstreamAnswer['error'] } | undefined {
  // Read as an MCP client reads it (src/gateway/sse.ts): CR, LF or CRLF line ends, events of type `message`.
  const candidates = isEventStream(contentType) ? parseEvents(text).filter(isMessageEvent).map((event) => event.data) : [text];
  for (const candidate of candidates) {
    if (!candidate) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(candidate);
    } catch {
      continue;
    }
    const message = parsed as { id?: unknown; result?: unknown; error?: UpstreamAnswer['error'] };
    if (message && typeof message === 'object' && message.id === id && (message.result !== undefined || message.error !== undefined)) return { result: message.result, error: message.error };
  }
  return undefined;
}
