import { upstreamError } from '../filters/proxy.ts';
import { isEventStream } from '../response-tap.ts';
import { SseParser, isMessageEvent } from '../sse.ts';
import { relayedMessage } from './names.ts';
import type { MuxUpstream } from './upstream-client.ts';

/** The largest event the gateway reads from an upstream's GET stream; a larger one ends that upstream's stream. */
const MAX_EVENT = 1024 * 1024;

/** How one upstream's GET went: streaming, left out (it offers no stream: 405), or failed. */
export type OpenedStream =
  | { upstream: MuxUpstream; body: ReadableStream<Uint8Array>; abort: AbortController }
  | { upstream: MuxUpstream; status: number }
  | { upstream: MuxUpstream; failed: string };

/**
 * Opens an upstream's GET stream (MCP Streamable HTTP "Listening for messages from the server"):
 * `timeoutMs` bounds the wait for its headers only. No `Last-Event-ID` is sent: a multiplexed
 * stream is not resumable (docs/gateway.md "Several MCP servers behind one route").
 */
export async function openStream(fetchImpl: typeof fetch, upstream: MuxUpstream, headers: Record<string, string>, timeoutMs: number): Promise<OpenedStream> {
  const sent: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== '') sent[name] = value;
  for (const name of ['content-type', 'content-length', 'mcp-method', 'mcp-name', 'last-event-id']) delete sent[name];
  sent.accept = 'text/event-stream';
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new DOMException(`no answer in ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
  let response: Response;
  try {
    response = await fetchImpl(upstream.url, { method: 'GET', headers: sent, redirect: 'manual', signal: abort.signal });
  } catch (error) {
    return { upstream, failed: upstreamError(error).message };
  } finally {
    clearTimeout(timer);
  }
  const contentType = response.headers.get('content-type') ?? '';
  if (response.status === 200 && isEventStream(contentType) && response.body) return { upstream, body: response.body, abort };
  await response.body?.cancel().catch(() => undefined);
  return response.status === 405 ? { upstream, status: 405 } : { upstream, failed: `GET answered ${response.status}${response.status === 200 ? ` ${contentType || 'without a content type'}` : ''}` };
}

/** How the merged stream ended, for the audit event. */
export interface MergedEnd {
  /** The client went away first (the upstream streams were then cancelled). */
  clientClosed: boolean;
  /** Upstreams whose stream broke (not a clean end), with why. */
  interrupted: string[];
}

/**
 * One SSE stream to the client from several upstreams' GET streams: each event rewritten by
 * {@link relayedMessage} (JSON-RPC responses dropped: MCP 2025-11-25 transports, the server "MUST
 * NOT send a JSON-RPC response on the stream") and sent as `event: message` with its data only (no
 * `id:`: nothing to resume). An upstream's stream ending leaves the others going; the client's ends when all have.
 * Pulled, as the proxy's stream is: the upstreams are read only while the client reads, and the
 * client going away (the runtime cancels the stream, workerd at the next write) cancels them all.
 */
export function mergeStreams(streams: { upstream: MuxUpstream; body: ReadableStream<Uint8Array>; abort: AbortController }[], onEnd: (end: MergedEnd) => void): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let out = '';
  /** Each event rewritten by relayedMessage; other event types (an MCP client skips them), comments and what is not JSON: nothing. */
  const relay = (upstream: string) =>
    new SseParser({
      onEvent: (event) => {
        if (!isMessageEvent(event)) return;
        let relayed: Record<string, unknown> | undefined;
        try {
          relayed = relayedMessage(JSON.parse(event.data), upstream);
        } catch {
          relayed = undefined;
        }
        if (relayed) out += `event: message\ndata: ${JSON.stringify(relayed)}\n\n`;
      },
    });
  const sources = streams.map((stream) => ({ ...stream, reader: stream.body.getReader(), decoder: new TextDecoder(), parser: relay(stream.upstream.name), open: true }));
  type Source = (typeof sources)[number];
  type Read = { source: Source; chunk?: ReadableStreamReadResult<Uint8Array>; error?: unknown };
  const reads = new Map<Source, Promise<Read>>();
  const interrupted: string[] = [];
  let done = false;
  const finish = (clientClosed: boolean) => {
    if (done) return false;
    done = true;
    onEnd({ clientClosed, interrupted });
    return true;
  };
  /** The complete events of a source so far, rewritten; the partial one waits for its end. */
  const events = (source: Source, text: string): string => {
    source.parser.feed(text);
    if (source.parser.buffered > MAX_EVENT) throw new Error('an event is too large');
    const relayed = out;
    out = '';
    return relayed;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const open = sources.filter((source) => source.open);
        if (open.length === 0) {
          if (finish(false)) controller.close();
          return;
        }
        for (const source of open) {
          if (!reads.has(source)) {
            reads.set(
              source,
              source.reader.read().then(
                (chunk) => ({ source, chunk }),
                (error: unknown) => ({ source, error }),
              ),
            );
          }
        }
        const { source, chunk, error } = await Promise.race(reads.values());
        reads.delete(source);
        if (done) return;
        let text = '';
        try {
          if (error !== undefined) throw error;
          if (chunk!.done) {
            source.open = false;
            continue;
          }
          text = events(source, source.decoder.decode(chunk!.value, { stream: true }));
        } catch (failure) {
          // One upstream breaking off ends its part only; the audit event says which and why.
          source.open = false;
          interrupted.push(`${source.upstream.name}: ${(failure as Error)?.message ?? String(failure)}`);
          void source.reader.cancel(failure).catch(() => undefined);
          continue;
        }
        if (text) {
          controller.enqueue(encoder.encode(text));
          return;
        }
      }
    },
    cancel(reason) {
      finish(true);
      for (const source of sources) {
        source.open = false;
        void source.reader.cancel(reason).catch(() => undefined);
        source.abort.abort();
      }
    },
  });
}
