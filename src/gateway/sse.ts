/**
 * The gateway's one reading of server-sent events (HTML Living Standard, "Interpreting an event
 * stream"), the same as the MCP SDK clients' (`eventsource-parser`, test/gateway/sse-parser.test.ts
 * compares them): lines end with CRLF, LF or a bare CR (a CR last in what has arrived waits for the
 * next chunk, in case an LF follows); a blank line dispatches the event if it had a `data` line; `id`
 * and `event` hold for that event only; an event without its blank line when the stream ends is
 * never dispatched. Whatever the gateway passes on after reading it is written again from what it
 * read ({@link eventText}), so a client cannot read more into it than the gateway did.
 */
export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

export interface SseSink {
  onEvent(event: SseEvent): void;
  onComment?(comment: string): void;
  onRetry?(ms: number): void;
}

export class SseParser {
  private fragments: string[] = [];
  private fragmentsLength = 0;
  private first = true;
  private id: string | undefined;
  private event: string | undefined;
  private data = '';
  private dataLines = 0;

  constructor(private readonly sink: SseSink) {}

  /** Characters held: an incomplete line and the data of an event not dispatched yet. */
  get buffered(): number {
    return this.fragmentsLength + this.data.length;
  }

  feed(chunk: string): void {
    if (this.first) {
      this.first = false;
      // eventsource-parser drops these three characters (a UTF-8 BOM read as Latin-1) first in the stream; the decoder already drops U+FEFF.
      if (chunk.startsWith('\u00ef\u00bb\u00bf')) chunk = chunk.slice(3);
    }
    if (this.fragments.length > 0 && chunk.indexOf('\n') < 0 && chunk.indexOf('\r') < 0) {
      this.fragments.push(chunk);
      this.fragmentsLength += chunk.length;
      return;
    }
    this.fragments.push(chunk);
    const text = this.fragments.join('');
    this.fragments = [];
    let at = 0;
    for (;;) {
      const cr = text.indexOf('\r', at);
      const lf = text.indexOf('\n', at);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0 || (end === cr && cr === text.length - 1)) break;
      this.line(text.slice(at, end));
      at = end + 1;
      if (end === cr && text.charCodeAt(at) === 10) at++;
    }
    const rest = text.slice(at);
    if (rest) this.fragments.push(rest);
    this.fragmentsLength = rest.length;
  }

  private line(line: string): void {
    if (line === '') {
      if (this.dataLines > 0) this.sink.onEvent({ ...(this.id === undefined ? {} : { id: this.id }), ...(this.event === undefined ? {} : { event: this.event }), data: this.data });
      this.id = undefined;
      this.event = undefined;
      this.data = '';
      this.dataLines = 0;
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) {
      this.sink.onComment?.(line.slice(line.charCodeAt(1) === 32 ? 2 : 1));
      return;
    }
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(line.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1);
    // Field names are compared literally, with no case folding.
    if (field === 'data') {
      this.data = this.dataLines === 0 ? value : `${this.data}\n${value}`;
      this.dataLines++;
    } else if (field === 'event') {
      this.event = value || undefined;
    } else if (field === 'id') {
      if (!value.includes('\0')) this.id = value;
    } else if (field === 'retry') {
      if (/^\d+$/.test(value)) this.sink.onRetry?.(parseInt(value, 10));
    }
  }
}

/** The events of a complete body (an event not closed by a blank line is not one). */
export function parseEvents(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  new SseParser({ onEvent: (event) => events.push(event) }).feed(text);
  return events;
}

/** One event written again, LF line ends, without the blank line that ends it. */
export function eventText(event: SseEvent): string {
  const lines: string[] = [];
  if (event.id !== undefined) lines.push(`id: ${event.id}`);
  if (event.event !== undefined) lines.push(`event: ${event.event}`);
  for (const line of event.data.split('\n')) lines.push(`data: ${line}`);
  return lines.join('\n');
}

/** Whether an MCP client takes the event's data as a JSON-RPC message (the SDK: no type, or `message`). */
export function isMessageEvent(event: SseEvent): boolean {
  return event.event === undefined || event.event === 'message';
}

/** The one event of an event's text as written by {@link eventText} (or sent by an upstream), undefined if none. */
export function parseEvent(text: string): SseEvent | undefined {
  return parseEvents(`${text}\n\n`)[0];
}
