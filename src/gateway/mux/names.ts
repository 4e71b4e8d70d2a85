/**
 * How the multiplexer names what belongs to one upstream, so that any replica can route it back
 * without a shared map: resource URIs and the ids of the upstream's own requests become
 * `mandate+<upstream>:<the upstream's URI or id>` (docs/gateway.md "Several MCP servers behind one
 * route"). Resource URIs are opaque and may collide between servers; a scheme prefix keeps them apart.
 */
import { InvalidAnswer } from '../pins/answer.ts';
import { isResponse } from '../response-tap.ts';
import { eventText, isMessageEvent, parseEvent } from '../sse.ts';

/** The prefix of a name the gateway gives: `mandate+<upstream>:`. */
export const RESOURCE_SCHEME_PREFIX = 'mandate+';

/** The gateway's name for an upstream's resource URI, or for an upstream's request id (as JSON). */
export function gatewayName(upstream: string, name: string): string {
  return `${RESOURCE_SCHEME_PREFIX}${upstream}:${name}`;
}

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A content block (MCP 2025-06-18+ `ContentBlock`) with the resource it names under the gateway's
 * URI: a `resource_link`'s `uri`, an embedded `resource`'s `resource.uri`. The client's later
 * `resources/read` of that URI then reaches the upstream that gave it. Other blocks are unchanged.
 */
function renameBlock(block: unknown, upstream: string): unknown {
  if (!isObject(block)) return block;
  if (block.type === 'resource_link' && typeof block.uri === 'string') return { ...block, uri: gatewayName(upstream, block.uri) };
  if (block.type === 'resource' && isObject(block.resource) && typeof block.resource.uri === 'string') {
    return { ...block, resource: { ...block.resource, uri: gatewayName(upstream, block.resource.uri) } };
  }
  return block;
}

const renameBlocks = (blocks: unknown, upstream: string): unknown => (Array.isArray(blocks) ? blocks.map((block) => renameBlock(block, upstream)) : blocks);

/**
 * A result of a request dispatched to `upstream`, with every resource URI in it under the gateway's
 * name. `structuredContent` is left as it is: it is the tool's own JSON, checked by the client
 * against the tool's `outputSchema`; the gateway cannot tell a URI in it from any other string, and
 * renaming one would change the tool's answer (its `content` carries the links a client follows).
 */
export const RESULT_RENAMES: Record<string, (result: unknown, upstream: string) => unknown> = {
  // CallToolResult.content: resource links and embedded resources.
  'tools/call': (result, upstream) => (isObject(result) && Array.isArray(result.content) ? { ...result, content: renameBlocks(result.content, upstream) } : result),
  // GetPromptResult.messages[].content: one block (an array in newer revisions), possibly an embedded resource.
  'prompts/get': (result, upstream) =>
    isObject(result) && Array.isArray(result.messages)
      ? { ...result, messages: result.messages.map((message) => (isObject(message) ? { ...message, content: Array.isArray(message.content) ? renameBlocks(message.content, upstream) : renameBlock(message.content, upstream) } : message)) }
      : result,
  // ReadResourceResult.contents[].uri: named as the gateway listed it.
  'resources/read': (result, upstream) =>
    isObject(result) && Array.isArray(result.contents)
      ? { ...result, contents: result.contents.map((content) => (isObject(content) && typeof content.uri === 'string' ? { ...content, uri: gatewayName(upstream, content.uri) } : content)) }
      : result,
};

/**
 * One message an upstream sends to the client, under the gateway's names, or undefined to drop it.
 * Only JSON-RPC requests and notifications pass: a request gets the id `mandate+<upstream>:<its id
 * as JSON>` (so that the client's answer, to any replica, names the upstream to take it back to,
 * and no other upstream sees it), `notifications/cancelled` of such a request names it so too, and
 * `notifications/resources/updated` its URI as the lists do.
 */
export function relayedMessage(message: unknown, upstream: string): Json | undefined {
  if (!isObject(message)) return undefined;
  if (message.jsonrpc !== '2.0' || typeof message.method !== 'string') return undefined;
  const params = isObject(message.params) ? message.params : undefined;
  if (message.id !== undefined) {
    if (typeof message.id !== 'string' && typeof message.id !== 'number') return undefined;
    // Only the gateway names ids so: an upstream's own would send the client's answer to another upstream.
    if (typeof message.id === 'string' && message.id.startsWith(RESOURCE_SCHEME_PREFIX)) return undefined;
    return { ...message, id: gatewayName(upstream, JSON.stringify(message.id)) };
  }
  if (message.method === 'notifications/resources/updated' && typeof params?.uri === 'string') {
    return { ...message, params: { ...params, uri: gatewayName(upstream, params.uri) } };
  }
  if (message.method === 'notifications/cancelled' && (typeof params?.requestId === 'string' || typeof params?.requestId === 'number')) {
    return { ...message, params: { ...params, requestId: gatewayName(upstream, JSON.stringify(params.requestId)) } };
  }
  return message;
}

/** The upstream and its own id, from the id of a client's answer to a renamed upstream request. */
export function upstreamRequestOf(id: unknown): { upstream: string; id: string | number } | undefined {
  if (typeof id !== 'string' || !id.startsWith(RESOURCE_SCHEME_PREFIX)) return undefined;
  const colon = id.indexOf(':');
  if (colon < 0) return undefined;
  try {
    const original = JSON.parse(id.slice(colon + 1)) as unknown;
    return typeof original === 'string' || typeof original === 'number' ? { upstream: id.slice(RESOURCE_SCHEME_PREFIX.length, colon), id: original } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One SSE event of a dispatched request's answer stream, as the client gets it ('' drops it): the
 * response to the request (`id`) with its result renamed by `renameResult`; the upstream's own
 * requests and their cancellations renamed as {@link relayedMessage} does, one whose id already
 * looks like the gateway's dropped. Any other JSON-RPC response is dropped — the client would take
 * it for the answer to one of its own requests (its pending `tools/list`, say) — and so is what an
 * MCP client would not read as a message (another event type, not JSON, a batch); an event with
 * empty data (a priming event) passes, holding no message. The event is written again as the gateway read it (../sse.ts), so the client reads nothing else.
 */
export function renameCallEvent(text: string, upstream: string, id: string | number | undefined, renameResult?: (result: unknown, upstream: string) => unknown): string {
  const event = parseEvent(text);
  if (!event || !isMessageEvent(event)) return '';
  // A priming event (an id, empty data: MCP 2025-11-25) carries no message; the client keeps its id.
  if (event.data === '') return eventText(event);
  let message: unknown;
  try {
    message = JSON.parse(event.data);
  } catch {
    return '';
  }
  if (isResponse(message)) {
    if (id === undefined || message.id !== id || (message as { jsonrpc?: unknown }).jsonrpc !== '2.0') return '';
    const renamed = renameResult && message.result !== undefined ? { ...message, result: renameResult(message.result, upstream) } : message;
    return eventText({ ...event, data: JSON.stringify(renamed) });
  }
  const relayed = relayedMessage(message, upstream);
  return relayed ? eventText({ ...event, data: JSON.stringify(relayed) }) : '';
}

/**
 * A JSON answer to a dispatched request: the response to it, written again; anything else a client
 * would read as messages (a batch, another id, a request or notification) is refused (502,
 * `upstream_invalid_answer`). What is not JSON is passed: no client reads a message in it.
 */
export function onlyTheResponse(text: string, id: string | number | undefined, method: string): string {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return text;
  }
  if (Array.isArray(message)) throw new InvalidAnswer('the answer is a batch', method);
  if (!isResponse(message)) throw new InvalidAnswer('the answer is not a JSON-RPC response', method);
  if (id === undefined || message.id !== id || (message as { jsonrpc?: unknown }).jsonrpc !== '2.0') throw new InvalidAnswer(`a response with the id ${JSON.stringify(message.id) ?? 'undefined'}, not the request's ${JSON.stringify(id) ?? '(none)'}`, method);
  return JSON.stringify(message);
}
