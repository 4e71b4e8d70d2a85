import { SseParser, eventText, parseEvents, type SseEvent } from './sse.ts';

/**
 * Reads the JSON-RPC outcome of a proxied response as it streams past, for the audit log, without
 * holding the stream back: a JSON body, or the server-sent events of a streamed one (where the
 * response to the request is the event whose `id` matches, after any progress notifications).
 */
export interface ResponseOutcome {
  outcome?: 'result' | 'error';
  jsonrpc_error?: number;
  is_error?: boolean;
}

/** Bytes of a JSON body, or of one SSE event, examined at most; larger ones are passed, unread. */
const MAX_INSPECTED = 256 * 1024;

function outcomeOf(message: unknown, id: string | number | undefined): ResponseOutcome | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const m = message as { id?: unknown; result?: { isError?: unknown }; error?: { code?: unknown } };
  if (m.id === undefined || m.id !== id) return undefined;
  if (m.error !== undefined) return { outcome: 'error', jsonrpc_error: typeof m.error?.code === 'number' ? m.error.code : undefined };
  if (m.result !== undefined) return { outcome: 'result', is_error: m.result?.isError === true ? true : m.result?.isError === false ? false : undefined };
  return undefined;
}

/**
 * The media type of a `Content-Type` value, lower-case, without parameters (RFC 9110 §8.3.1: type
 * and subtype are case-insensitive) — as the MCP SDK client reads it, so that the gateway and the
 * client take the same answers for SSE. A header sent twice (an array, or values joined by a comma)
 * is neither SSE nor JSON.
 */
export function mediaType(contentType: string | string[] | undefined): string | undefined {
  if (typeof contentType !== 'string') return undefined;
  return (contentType.split(';', 1)[0] ?? '').trim().toLowerCase() || undefined;
}

export function isEventStream(contentType: string | string[] | undefined): boolean {
  // The usual spellings first: this runs for every proxied answer.
  if (contentType === 'text/event-stream') return true;
  if (contentType === 'application/json') return false;
  return mediaType(contentType) === 'text/event-stream';
}

/** Decodes a whole body at once (a non-streaming decode keeps no state between calls). */
const UTF8 = new TextDecoder();

export class ResponseTap {
  /** For SSE only: events are examined as they arrive, so their bytes are decoded as a stream. */
  private readonly decoder: TextDecoder | undefined;
  private readonly sse: boolean;
  private readonly parser: SseParser | undefined;
  /** A JSON body's chunks, decoded once at the end: cheaper than a streaming decode per chunk. */
  private chunks: Uint8Array[] | undefined;
  private size = 0;
  private overflow = false;
  private found: ResponseOutcome | undefined;

  constructor(contentType: string | undefined, private readonly id: string | number | undefined) {
    this.sse = isEventStream(contentType);
    if (this.sse) {
      this.decoder = new TextDecoder();
      this.parser = new SseParser({ onEvent: (event) => (this.found ??= outcomeOf(tryParse(event.data), this.id)) });
    }
  }

  push(chunk: Uint8Array): void {
    if (this.found || this.id === undefined) return;
    if (!this.sse) {
      if (this.overflow) return;
      this.size += chunk.byteLength;
      if (this.size > MAX_INSPECTED) {
        this.overflow = true;
        this.chunks = undefined;
      } else if (chunk.byteLength > 0) (this.chunks ??= []).push(chunk);
      return;
    }
    if (this.overflow) return;
    this.parser!.feed(this.decoder!.decode(chunk, { stream: true }));
    // An event larger than this is not examined: the rest of the stream is passed, unread.
    if (this.parser!.buffered > MAX_INSPECTED) this.overflow = true;
  }

  finish(): ResponseOutcome {
    if (this.found) return this.found;
    if (!this.sse && !this.overflow && this.chunks) return outcomeOf(tryParse(UTF8.decode(concat(this.chunks, this.size))), this.id) ?? {};
    return {};
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

function tryParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A JSON-RPC response (it has a `result` or an `error`): what a client matches to one of its requests. */
export function isResponse(message: unknown): message is { id?: unknown; result?: unknown; error?: unknown } {
  return typeof message === 'object' && message !== null && !Array.isArray(message) && ('result' in message || 'error' in message);
}

/**
 * Rewrites the result of every JSON-RPC response in a complete body (JSON — one message or a
 * batch — or SSE), leaving every other message as it was: how `tools/list` answers are filtered.
 * Every response, not only the one whose id is the request's: a client may take a response with
 * another id (`"5"` for 5, say) for the answer to this or another of its requests. SSE is read as
 * the client reads it and written again (LF line ends); events it cannot read are dropped.
 */
export function rewriteResponse(body: string, contentType: string | undefined, _id: string | number | undefined, rewrite: (result: unknown) => unknown): string {
  const apply = (message: unknown): unknown => (isResponse(message) && message.result !== undefined ? { ...message, result: rewrite(message.result) } : message);
  const applyAll = (text: string): string | undefined => {
    const parsed = tryParse(text);
    if (parsed === undefined) return undefined;
    return JSON.stringify(Array.isArray(parsed) ? parsed.map(apply) : apply(parsed));
  };
  if (!isEventStream(contentType)) return applyAll(body) ?? body;
  return parseEvents(body)
    .map((event: SseEvent) => `${eventText({ ...event, data: applyAll(event.data) ?? event.data })}\n\n`)
    .join('');
}
