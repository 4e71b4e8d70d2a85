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

export function isEventStream(contentType: string | undefined): boolean {
  return (contentType ?? '').toLowerCase().startsWith('text/event-stream');
}

/** Decodes a whole body at once (a non-streaming decode keeps no state between calls). */
const UTF8 = new TextDecoder();

export class ResponseTap {
  /** For SSE only: events are examined as they arrive, so their bytes are decoded as a stream. */
  private readonly decoder: TextDecoder | undefined;
  private readonly sse: boolean;
  private text = '';
  /** A JSON body's chunks, decoded once at the end: cheaper than a streaming decode per chunk. */
  private chunks: Uint8Array[] | undefined;
  private size = 0;
  private overflow = false;
  private found: ResponseOutcome | undefined;

  constructor(contentType: string | undefined, private readonly id: string | number | undefined) {
    this.sse = isEventStream(contentType);
    if (this.sse) this.decoder = new TextDecoder();
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
    this.text += this.decoder!.decode(chunk, { stream: true });
    // Examine each complete event; keep the incomplete tail.
    for (;;) {
      const end = this.text.search(/\r?\n\r?\n/);
      if (end < 0) break;
      const event = this.text.slice(0, end);
      this.text = this.text.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = sseData(event);
      if (data) this.found = outcomeOf(tryParse(data), this.id);
      if (this.found) return;
    }
    if (this.text.length > MAX_INSPECTED) this.text = '';
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

/** The data of one SSE event (its `data:` lines joined by newlines), per the HTML event stream format. */
function sseData(event: string): string | undefined {
  let data: string | undefined;
  for (const line of event.split(/\r?\n/)) {
    if (!line.startsWith('data:')) continue;
    const value = line.slice(line[5] === ' ' ? 6 : 5);
    data = data === undefined ? value : `${data}\n${value}`;
  }
  return data;
}

/**
 * Rewrites the result of the response to request `id` in a complete body (JSON or SSE), leaving
 * every other message as it was: how `tools/list` answers are filtered.
 */
export function rewriteResponse(body: string, contentType: string | undefined, id: string | number | undefined, rewrite: (result: unknown) => unknown): string {
  const apply = (message: unknown): unknown => {
    const m = message as { id?: unknown; result?: unknown };
    return m && typeof m === 'object' && m.id === id && m.result !== undefined ? { ...m, result: rewrite(m.result) } : undefined;
  };
  if (!isEventStream(contentType)) {
    const changed = apply(tryParse(body));
    return changed === undefined ? body : JSON.stringify(changed);
  }
  return body
    .split(/(\r?\n\r?\n)/)
    .map((event) => {
      const data = sseData(event);
      const changed = data === undefined ? undefined : apply(tryParse(data));
      if (changed === undefined) return event;
      const other = event.split(/\r?\n/).filter((line) => !line.startsWith('data:'));
      return [...other, `data: ${JSON.stringify(changed)}`].join('\n');
    })
    .join('');
}
