import { UpstreamError } from '../filters/proxy.ts';
import { isEventStream, isResponse, mediaType } from '../response-tap.ts';
import { eventText, isMessageEvent, parseEvent, parseEvents, type SseEvent } from '../sse.ts';

/**
 * A `tools/list` answer on a route with tool pinning is the gateway's to rebuild, not to patch: it
 * is read strictly, and anything but exactly one JSON-RPC response whose `id` is the request's
 * (same type) is refused (502, `upstream_invalid_answer`) — a batch, a second answer, an answer
 * with another id (`"5"` for 5), an SSE event that is not JSON-RPC, a media type that is neither
 * JSON nor SSE. A client reads more than one shape (the MCP SDK client reads batches, matches
 * `Number(id)`, takes the first of two answers): passed on, a shape the gateway did not judge would
 * bring the client a list no one judged.
 */
export class InvalidAnswer extends UpstreamError {
  constructor(reason: string, method = 'tools/list') {
    super(502, 'upstream_invalid_answer', `${method}: ${reason}`);
  }

  override get publicMessage(): string {
    return 'the upstream server sent an answer the gateway cannot check';
  }
}

export interface StrictAnswer {
  /** The response to the request: a `result` with a `tools` array, or an `error`. */
  answer: { jsonrpc: '2.0'; id: string | number; result?: { tools: unknown[] } & Record<string, unknown>; error?: unknown };
  /** The body written again with `answer` in place of the upstream's (SSE: with the requests and notifications it carried). */
  write(answer: object): string;
}

function checkAnswer(message: unknown, id: string | number): StrictAnswer['answer'] {
  const m = message as Record<string, unknown>;
  if (m.id !== id) throw new InvalidAnswer(`a response with the id ${JSON.stringify(m.id) ?? 'undefined'}, not the request's ${JSON.stringify(id)}`);
  if (m.jsonrpc !== '2.0') throw new InvalidAnswer('the response is not JSON-RPC 2.0');
  if ('method' in m || ('result' in m && 'error' in m)) throw new InvalidAnswer('the response has a method, or both a result and an error');
  if ('error' in m) return m as StrictAnswer['answer'];
  const result = m.result as Record<string, unknown> | null;
  if (typeof result !== 'object' || result === null || Array.isArray(result) || !Array.isArray(result.tools)) throw new InvalidAnswer('the result has no tools array');
  return m as StrictAnswer['answer'];
}

function parse(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidAnswer(`${what} is not JSON`);
  }
}

/** Reads a 2xx `tools/list` answer strictly (see {@link InvalidAnswer}); throws InvalidAnswer. */
export function strictAnswer(raw: string, contentType: string | undefined, id: string | number | undefined): StrictAnswer {
  if (id === undefined) throw new InvalidAnswer('no request id');
  const type = mediaType(contentType);
  if (type === 'application/json') {
    const message = parse(raw, 'the body');
    if (Array.isArray(message)) throw new InvalidAnswer('the answer is a batch');
    if (!isResponse(message)) throw new InvalidAnswer('the body is not a JSON-RPC response');
    return { answer: checkAnswer(message, id), write: (answer) => JSON.stringify(answer) };
  }
  if (type !== 'text/event-stream') throw new InvalidAnswer(`the answer is ${type ?? 'without a content type'}, neither JSON nor SSE`);
  const kept: (SseEvent | 'answer')[] = [];
  let found: { event: SseEvent; answer: StrictAnswer['answer'] } | undefined;
  for (const event of parseEvents(raw)) {
    // What an MCP client skips (the SDK: events of another type, events without data) is dropped.
    if (!isMessageEvent(event) || event.data === '') continue;
    const message = parse(event.data, 'an event');
    if (Array.isArray(message)) throw new InvalidAnswer('an event holds a batch');
    if (isResponse(message)) {
      if (found) throw new InvalidAnswer('a second response');
      found = { event, answer: checkAnswer(message, id) };
      kept.push('answer');
      continue;
    }
    const m = message as { jsonrpc?: unknown; method?: unknown } | null;
    if (typeof m !== 'object' || m === null || m.jsonrpc !== '2.0' || typeof m.method !== 'string') throw new InvalidAnswer('an event is not JSON-RPC');
    kept.push({ ...event, data: JSON.stringify(message) });
  }
  if (!found) throw new InvalidAnswer('no response in the stream');
  const { event: answerEvent, answer } = found;
  return {
    answer,
    write: (judged) => kept.map((event) => `${eventText(event === 'answer' ? { ...answerEvent, data: JSON.stringify(judged) } : event)}\n\n`).join(''),
  };
}

/**
 * On a route with tool pinning, an SSE event of any answer but a `tools/list` one, or of the GET
 * stream: a JSON-RPC response passes only as the answer to `id` (the request the stream answers;
 * none on the GET stream) — a client would take any other for the answer to one of its requests
 * (its pending `tools/list`) — and a batch not at all. Everything else passes as read.
 */
export function answerOnly(text: string, id: string | number | undefined): string {
  const event = parseEvent(text);
  if (!event) return '';
  let message: unknown;
  try {
    message = JSON.parse(event.data);
  } catch {
    return text;
  }
  if (Array.isArray(message) && message.some(isResponse)) return '';
  if (isResponse(message) && (id === undefined || message.id !== id)) return '';
  return text;
}

/**
 * On a route with tool pinning, a whole (buffered) answer to any request but `tools/list`: as
 * {@link answerOnly} for each SSE event; a JSON body that holds a response to another id, or a batch
 * with a response, is refused ({@link InvalidAnswer}) — the MCP SDK client takes a JSON answer's
 * messages for the answers to whichever of its requests they name. A JSON message is written again.
 */
export function onlyTheAnswer(body: string, contentType: string | undefined, id: string | number | undefined, method: string): string {
  if (isEventStream(contentType)) {
    return parseEvents(body)
      .map((event) => answerOnly(eventText(event), id))
      .filter(Boolean)
      .map((event) => `${event}\n\n`)
      .join('');
  }
  let message: unknown;
  try {
    message = JSON.parse(body);
  } catch {
    return body;
  }
  if (Array.isArray(message) && message.some(isResponse)) throw new InvalidAnswer('the answer is a batch', method);
  if (isResponse(message) && (id === undefined || message.id !== id)) throw new InvalidAnswer(`a response with the id ${JSON.stringify(message.id) ?? 'undefined'}, not the request's ${JSON.stringify(id) ?? '(none)'}`, method);
  return JSON.stringify(message);
}
