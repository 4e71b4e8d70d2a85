import type { Context, Next } from 'hono';
import { refuse as refuseWith } from './refuse.ts';
import { requestHeader } from '../headers.ts';
import { JsonLimitError, parseJsonWithin } from '../../core/json-limits.ts';
import { JSON_RPC_ERRORS, JsonRpcError, PROTOCOL_STATELESS, PROTOCOL_WITH_SESSIONS, checkStandardHeaders, parseMcpMessage, type McpMessage } from '../mcp-message.ts';

/**
 * The validation filter, first in the gateway's chain: everything after it may trust that the
 * request is a well-formed MCP request for a protocol revision it speaks, from an allowed origin.
 * Refusals are JSON-RPC error bodies with the HTTP status the transport defines.
 */
export interface ValidateOptions {
  /** Browser origins allowed to call (a request without Origin is not from a browser page). */
  allowedOrigins: string[];
  /** Largest POST body, in bytes. */
  maxBodyBytes: number;
  /** Deepest nesting of arrays and objects in a POST body (the message itself is level 1); default 64. */
  maxJsonDepth?: number;
  /** Protocol revisions accepted in MCP-Protocol-Version. */
  protocolVersions?: string[];
}

/** What later filters read from `c.get('mcp')`. */
export interface McpRequestContext {
  /** Undefined for GET (the SSE stream) and DELETE (end of session). */
  message?: McpMessage;
  /**
   * The body to forward: the validated message serialized again, never the raw bytes, so the
   * upstream cannot read duplicate keys or other parser leeway differently than the gateway did.
   */
  body?: string;
  /** The body as the client sent it (decoded as UTF-8): what a DPoP proof's content_digest covers (SEP-1932). */
  raw?: string;
  protocolVersion: string;
  sessionId?: string;
}

export interface ValidateVariables {
  mcp: McpRequestContext;
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * A page served by the gateway's own loopback origin (Origin = http://localhost:port, Host =
 * localhost:port). DNS rebinding cannot forge this pair: a rebound page keeps its own hostname in
 * both headers, which is then refused unless listed.
 */
function sameLoopbackOrigin(origin: string, host: string | undefined): boolean {
  try {
    const url = new URL(origin);
    return url.host === host && LOOPBACK_HOSTS.has(url.hostname);
  } catch {
    return false;
  }
}

/** What the filter uses of Node's IncomingMessage (`c.env.incoming` on Node; absent on Workers). */
interface NodeIncoming {
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  readableEnded: boolean;
  /** Whether the whole message has arrived. */
  complete: boolean;
  read(): Uint8Array | null;
}

/** The client's connection ended before its body was complete (Node's request stream failed: `aborted`). */
class ClientGone {
  constructor(readonly reason: string) {}
}

/**
 * The body as text, or undefined past `maxBytes` (counted as it arrives, so a chunked body cannot
 * grow without bound). On Node the request stream is read directly: building a web Request for
 * it costs more than the rest of the filter.
 */
function readBody(c: Context, maxBytes: number): string | undefined | Promise<string | undefined | ClientGone> {
  const incoming = (c.env as { incoming?: NodeIncoming } | undefined)?.incoming;
  if (incoming && typeof incoming.read === 'function' && !incoming.readableEnded) {
    // Once the message is complete (a filter before this one waited), all of it is in the stream's
    // buffer and is read at once, without listeners or a promise; else as the parser pushes it.
    if (incoming.complete === true) return readBuffered(incoming, maxBytes);
    return readPaused(incoming, maxBytes);
  }
  return readWebBody(c.req.raw.body, maxBytes);
}

/**
 * A Node request's body, read in paused mode as the parser pushes it. Node's HTTP parser emits the
 * request at the end of its headers and only then parses a body that came in the same read, after
 * the ticks and microtasks of the headers' callback have run: the body is never complete when the
 * chain starts. The message's end (`complete`, then the end of the stream) emits `readable` at
 * once, so the body is done in the parser's last callback — not, as with `data` listeners, after
 * the stream has been resumed and has emitted `end` on later ticks. Counted as it arrives: past
 * `maxBytes` it resolves undefined at once.
 */
function readPaused(incoming: NodeIncoming, maxBytes: number): Promise<string | undefined | ClientGone> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const done = (value: string | undefined | ClientGone) => {
      incoming.off('readable', onReadable);
      incoming.off('error', onError);
      resolve(value);
    };
    const onReadable = () => {
      for (let chunk = incoming.read(); chunk !== null; chunk = incoming.read()) {
        size += chunk.byteLength;
        if (size > maxBytes) return done(undefined);
        chunks.push(chunk);
      }
      // `complete` is set before the end of the stream is pushed, after the last chunk: all is read.
      if (incoming.complete === true || incoming.readableEnded) done(chunks.length === 1 ? decoder.decode(chunks[0]) : decoder.decode(concat(chunks, size)));
    };
    const onError = (error: Error) => done(new ClientGone(error.message));
    incoming.on('readable', onReadable);
    incoming.on('error', onError);
  });
}

function readBuffered(incoming: NodeIncoming, maxBytes: number): string | undefined {
  let first: Uint8Array | undefined;
  let chunks: Uint8Array[] | undefined;
  let size = 0;
  for (let chunk = incoming.read(); chunk !== null; chunk = incoming.read()) {
    size += chunk.byteLength;
    if (size > maxBytes) return undefined;
    if (first === undefined) first = chunk;
    else (chunks ??= [first]).push(chunk);
  }
  if (first === undefined) return '';
  return decoder.decode(chunks ? concat(chunks, size) : first);
}

async function readWebBody(stream: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<string | undefined> {
  if (!stream) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return decoder.decode(concat(chunks, size));
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return all;
}

const decoder = new TextDecoder();

/** Without the header, the Streamable HTTP transport assumes its first revision (2025-03-26). */
const DEFAULT_PROTOCOL = '2025-03-26';

/**
 * The filter as the gateway's chain runs it: a request whose body has already arrived (the usual
 * small POST) is checked and passed on without an async frame (src/gateway/types.ts GatewayFilter);
 * only a body still arriving is awaited.
 */
export type ValidateFilter = (c: Context<{ Variables: ValidateVariables }>, next: Next) => Promise<Response | void> | Response;

export function validateMcp(options: ValidateOptions): ValidateFilter {
  if (!(options.maxBodyBytes > 0)) throw new Error('validateMcp: maxBodyBytes must be positive');
  const limits = { maxDepth: options.maxJsonDepth ?? 64 };
  if (!(limits.maxDepth > 0)) throw new Error('validateMcp: maxJsonDepth must be positive');
  for (const origin of options.allowedOrigins) {
    if (origin !== new URL(origin).origin) throw new Error(`validateMcp: ${origin} is not an origin (scheme://host[:port])`);
  }
  const origins = new Set(options.allowedOrigins);
  const versions = new Set(options.protocolVersions ?? [DEFAULT_PROTOCOL, '2025-06-18', PROTOCOL_WITH_SESSIONS, PROTOCOL_STATELESS]);

  return function validateMcpMiddleware(c, next) {
    const refuse = (status: number, code: number, message: string, rejection: string, id: string | number | null = null) =>
      refuseWith(c, { status, code, message, rejection, id });
    // DNS rebinding and cross-site calls: a browser Origin must be on the list (MCP transport security).
    const origin = requestHeader(c, 'origin');
    if (origin !== undefined && !origins.has(origin) && !sameLoopbackOrigin(origin, requestHeader(c, 'host'))) {
      return refuse(403, JSON_RPC_ERRORS.invalidRequest, 'origin not allowed', 'origin_not_allowed');
    }

    const protocolVersion = requestHeader(c, 'mcp-protocol-version') ?? DEFAULT_PROTOCOL;
    if (!versions.has(protocolVersion)) return refuse(400, JSON_RPC_ERRORS.invalidRequest, `unsupported MCP-Protocol-Version ${protocolVersion}`, 'protocol_version');
    const sessionId = requestHeader(c, 'mcp-session-id');
    const accept = requestHeader(c, 'accept') ?? '';
    const method = c.req.method;

    if (method === 'GET' || method === 'DELETE') {
      // 2026-07-28 has no sessions: no GET stream, no DELETE.
      if (protocolVersion >= PROTOCOL_STATELESS) return refuse(405, JSON_RPC_ERRORS.invalidRequest, `${method} is not part of MCP ${protocolVersion}`, 'method_not_allowed');
      if (method === 'GET' && !accept.includes('text/event-stream')) return refuse(406, JSON_RPC_ERRORS.invalidRequest, 'GET must accept text/event-stream', 'not_acceptable');
      c.set('mcp', { protocolVersion, sessionId });
      return next();
    }
    if (method !== 'POST') return refuse(405, JSON_RPC_ERRORS.invalidRequest, `${method} is not an MCP method`, 'method_not_allowed');
    if (!accept.includes('application/json') || !accept.includes('text/event-stream')) {
      return refuse(406, JSON_RPC_ERRORS.invalidRequest, 'Accept must list application/json and text/event-stream', 'not_acceptable');
    }
    if (!(requestHeader(c, 'content-type') ?? '').toLowerCase().startsWith('application/json')) {
      return refuse(415, JSON_RPC_ERRORS.invalidRequest, 'Content-Type must be application/json', 'unsupported_media_type');
    }
    const tooLarge = () => refuse(413, JSON_RPC_ERRORS.invalidRequest, `body larger than ${options.maxBodyBytes} bytes`, 'body_too_large');
    if (Number(requestHeader(c, 'content-length')) > options.maxBodyBytes) return tooLarge();
    // The checks of the body, once read in full (undefined: over the size limit).
    const checkBody = (body: string | undefined | ClientGone): Promise<Response | void> | Response => {
      if (body === undefined) return tooLarge();
      // Nobody is left to answer; audited as the forwarder audits a client that went away.
      if (body instanceof ClientGone) {
        return refuseWith(c, { status: 499, code: JSON_RPC_ERRORS.invalidRequest, message: 'the client went away', rejection: 'client_closed', reason: `the connection ended before the body was complete (${body.reason})`, decision: 'error' });
      }

      let json: unknown;
      try {
        json = parseJsonWithin(body, limits);
      } catch (error) {
        if (!(error instanceof JsonLimitError)) throw error;
        if (error.kind === 'syntax') return refuseWith(c, { status: 400, code: JSON_RPC_ERRORS.parseError, message: 'the body is not JSON', rejection: 'malformed', reason: error.message });
        return refuseWith(c, { status: 400, code: JSON_RPC_ERRORS.invalidRequest, message: 'the message exceeds the limits of this gateway', rejection: error.kind === 'depth' ? 'json_too_deep' : 'malformed', reason: error.message });
      }
      try {
        const message = parseMcpMessage(json);
        checkStandardHeaders(message, { method: requestHeader(c, 'mcp-method'), name: requestHeader(c, 'mcp-name') }, protocolVersion);
        // What the gateway checked is what the upstream reads (duplicate keys: the last one wins here).
        c.set('mcp', { message, body: JSON.stringify(json), raw: body, protocolVersion, sessionId });
      } catch (error) {
        if (!(error instanceof JsonRpcError)) throw error;
        // The audit says what was attempted (a tools/call without an id…), bounded; never the params.
        const attempted = (json as { method?: unknown } | null)?.method;
        const audit = c.get('audit' as never) as { method?: string } | undefined;
        if (audit && typeof attempted === 'string') audit.method = attempted.slice(0, 200);
        return refuse(error.status, error.code, error.message, error.rejection ?? (error.code === JSON_RPC_ERRORS.headerMismatch ? 'header_mismatch' : 'malformed'), error.id);
      }
      return next();
    };
    const read = readBody(c, options.maxBodyBytes);
    return typeof read === 'object' ? read.then(checkBody) : checkBody(read);
  };
}
