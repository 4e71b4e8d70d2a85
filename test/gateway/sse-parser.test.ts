import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { SseEventRewriter } from '../../src/gateway/filters/proxy.ts';
import { SseParser, eventText, parseEvents, type SseEvent } from '../../src/gateway/sse.ts';

/**
 * The gateway's SSE reader (src/gateway/sse.ts) against eventsource-parser, the one the MCP SDK
 * clients use: same events for any stream cut into any chunks (CR, LF, CRLF line ends, comments,
 * ids, event types, a BOM, an unfinished event at the end); and what the gateway writes again is
 * read back as the same events.
 */

interface Read {
  events: SseEvent[];
  retries: number[];
}

function theirs(chunks: string[]): Read {
  const read: Read = { events: [], retries: [] };
  const parser = createParser({
    onEvent: (event: EventSourceMessage) => read.events.push({ ...(event.id === undefined ? {} : { id: event.id }), ...(event.event === undefined ? {} : { event: event.event }), data: event.data }),
    onRetry: (ms) => read.retries.push(ms),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return read;
}

function ours(chunks: string[]): Read {
  const read: Read = { events: [], retries: [] };
  const parser = new SseParser({ onEvent: (event) => read.events.push(event), onRetry: (ms) => read.retries.push(ms) });
  for (const chunk of chunks) parser.feed(chunk);
  return read;
}

/** A stream cut at the given places. */
function cut(text: string, at: number[]): string[] {
  const points = [...new Set(at.map((n) => n % (text.length + 1)))].sort((a, b) => a - b);
  const chunks: string[] = [];
  let from = 0;
  for (const point of points) {
    chunks.push(text.slice(from, point));
    from = point;
  }
  chunks.push(text.slice(from));
  return chunks.filter((chunk, i) => chunk !== '' || i === 0);
}

const line = fc.oneof(
  fc.constantFrom('data', 'data:', 'data: ', 'data:  x', 'event: message', 'event:', 'event: other', 'id: 7', 'id:', 'id: a\0b', 'retry: 1000', 'retry: x', ': comment', ':', 'unknown: 1', 'Data: no', ' data: no', ''),
  fc.string({ unit: fc.constantFrom('a', ' ', ':', '{', '"', 'é', '\u2028') }).map((value) => `data: ${value}`),
);
const ending = fc.constantFrom('\n', '\r', '\r\n');
const stream = fc
  .tuple(fc.array(fc.tuple(line, ending), { maxLength: 30 }), fc.boolean())
  .map(([lines, bom]) => `${bom ? '\u00ef\u00bb\u00bf' : ''}${lines.map(([text, end]) => text + end).join('')}`);

describe('the SSE reader (src/gateway/sse.ts)', () => {
  it('reads every stream, cut anywhere, as eventsource-parser (the MCP SDK clients) does', () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 8 }), (text, at) => {
        const chunks = cut(text, at);
        assert.deepEqual(ours(chunks), theirs(chunks));
        assert.deepEqual(ours([text]), theirs([text]));
      }),
      { numRuns: 2000 },
    );
  });

  it('the cases of review 18: bare CR line ends, CRLF split across chunks, a CR last in the stream', () => {
    const cases: string[][] = [
      ['event: message\rdata: {"id":5}\r\r\n'],
      ['data: a\r', '\ndata: b\r\n\r\n'],
      ['data: a\r\r'],
      ['data: a\n\ndata: b'],
      ['id: 1\ndata:\n\n'],
    ];
    for (const chunks of cases) assert.deepEqual(ours(chunks), theirs(chunks), JSON.stringify(chunks));
    assert.deepEqual(parseEvents('event: message\rdata: {"id":5}\r\r\n'), [{ event: 'message', data: '{"id":5}' }]);
    assert.deepEqual(parseEvents('data: a\r\r'), [], 'a CR last in the stream waits for an LF that never comes, as in eventsource-parser');
  });

  it('what the gateway writes again is read back as the same events', () => {
    fc.assert(
      fc.property(stream, (text) => {
        const events = parseEvents(text);
        const written = events.map((event) => `${eventText(event)}\n\n`).join('');
        assert.deepEqual(theirs([written]).events, events);
      }),
      { numRuns: 1000 },
    );
  });

  it('SseEventRewriter: events written again with LF line ends; comments and retry kept; the rewrite may drop an event; an unfinished one is not passed', () => {
    const rewriter = new SseEventRewriter((event) => (event.includes('drop') ? '' : event.replace('data: a', 'data: A')));
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    let out = decoder.decode(rewriter.push(encoder.encode(': ping\r\rretry: 5\rid: 1\revent: message\rdata: a\r\rdata: drop\r')));
    out += decoder.decode(rewriter.push(encoder.encode('\n\r\ndata: x\r\n\r')));
    out += decoder.decode(rewriter.push(encoder.encode('\ndata: unfinished')));
    out += decoder.decode(rewriter.flush());
    assert.equal(out, ': ping\n\nretry: 5\n\nid: 1\nevent: message\ndata: A\n\ndata: x\n\n');
  });
});
