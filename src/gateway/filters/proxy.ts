import type { Context, MiddlewareHandler } from 'hono';
import type { RouteConfig } from '../../config/gateway-schema.ts';
import { ResponseTap, isEventStream, rewriteResponse } from '../response-tap.ts';
import { SseParser, eventText } from '../sse.ts';
import type { GatewayAuditEvent, GatewayEnv, Principal } from '../types.ts';
import { SessionStoreUnavailable, type SessionStore } from '../sessions.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';
import { requestHeader } from '../headers.ts';

/** RFC 9110 §7.6.1 hop-by-hop fields, and what must not cross the gateway in either direction. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/** The request body is re-sent with its own length; the upstream gets its own Host. */
const NOT_FORWARDED = new Set([...HOP_BY_HOP, 'host', 'content-length']);
/** The caller's credentials are for the gateway: never forwarded (no token passthrough). */
// The caller's DPoP proof is a credential for the gateway, like its token: never forwarded (RFC 9449 §7).
const CREDENTIALS = new Set(['authorization', 'cookie', 'dpop']);
/**
 * Client-address headers that proxies and CDNs set: from a caller they are forged, and an
 * upstream that trusts them would log, limit or allow by an address the caller chose.
 */
const CLIENT_ADDRESS = new Set(['x-real-ip', 'cf-connecting-ip', 'true-client-ip', 'x-client-ip', 'x-cluster-client-ip', 'fastly-client-ip', 'forwarded']);

/** RFC 9110 §7.6.1: the fields a Connection header names are hop-by-hop for this message too. */
function connectionNamed(incoming: [string, string | string[] | undefined][]): Set<string> | undefined {
  let named: Set<string> | undefined;
  for (const [name, value] of incoming) {
    if (value === undefined || name.toLowerCase() !== 'connection') continue;
    named = addConnectionTokens(named, value);
  }
  return named;
}

function addConnectionTokens(named: Set<string> | undefined, value: string | string[]): Set<string> | undefined {
  for (const token of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const field = token.trim().toLowerCase();
    if (field) (named ??= new Set()).add(field);
  }
  return named;
}

/** Whether a caller's request header (lower-case name) may go on to the upstream. */
function forwardable(name: string, named: Set<string> | undefined): boolean {
  return !(NOT_FORWARDED.has(name) || CREDENTIALS.has(name) || CLIENT_ADDRESS.has(name) || name.startsWith('x-forwarded-') || name.startsWith('x-mandate-') || named?.has(name));
}

export interface UpstreamTarget {
  /** The upstream's origin, e.g. http://localhost:8000 (one keep-alive pool each). */
  origin: string;
  /** Path and query on the upstream, after the rewrite. */
  path: string;
  method: string;
  body?: string;
  /** A web route forwards the request's own bytes (a form, an upload) instead of `body`. */
  bytes?: Uint8Array;
}

export interface ForwardHooks {
  timeouts: RouteConfig['timeouts'];
  /**
   * Rewrites a successful (2xx) answer before it goes back: the response is then buffered (at most
   * {@link REWRITE_BODY_LIMIT} bytes, 502 beyond), not streamed, and may be judged asynchronously
   * (tool pinning, multiplexing). Forwarding headers and limits are the same as for any request.
   * With `events` too, an SSE answer is not buffered: it goes through `events` instead.
   */
  rewrite?: (body: string, contentType: string | undefined) => string | Promise<string>;
  /** Which successful answers `rewrite` takes, by content type (default: every one); the others stream through. */
  rewrites?: (contentType: string | undefined) => boolean;
  /**
   * An SSE answer passed on event by event through this (each event as the gateway read it, written
   * again with LF line ends, without its blank line; '' drops it); JSON answers and rewritten ones
   * are not. The multiplexer renames the upstream's own requests and the resource URIs of the result
   * in a call's stream with it (and those of a JSON answer with `rewrite`); tool pinning drops
   * responses that do not answer the request.
   */
  events?: (event: string) => string;
  tap: (contentType: string | undefined) => ResponseTap;
  /** Extra headers for the response to the client (CORS). */
  responseHeaders: Record<string, string>;
  /**
   * Called with the upstream's `Mcp-Session-Id` when it sets one; the response waits for it (a
   * client must not hold a session id before it is bound), and is refused if it fails.
   */
  onSession: (sessionId: string) => void | Promise<void>;
  /** Headers the gateway adds for the upstream (identity headers); an empty value removes the caller's. */
  upstreamHeaders: Record<string, string>;
  /** Web routes: the upstream may not set these cookies (the gateway's session, the AS's). */
  dropCookie?: (name: string) => boolean;
}

/** The largest upstream answer the gateway buffers to rewrite; a larger one is a 502 (`upstream_unavailable`). */
export const REWRITE_BODY_LIMIT = 8 * 1024 * 1024;

/** Reads a body to rewrite, refusing one over {@link REWRITE_BODY_LIMIT} (the stream is then cancelled). */
export async function readLimited(body: ReadableStream<Uint8Array> | null, limit = REWRITE_BODY_LIMIT): Promise<string> {
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new UpstreamError(502, 'upstream_unavailable', 'the response to rewrite is too large');
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(all);
}

/**
 * Rewrites an SSE stream event by event as its chunks arrive: a complete event goes on at once, a
 * partial one waits for its end. Events are read as the client reads them (src/gateway/sse.ts: CR,
 * LF or CRLF line ends) and written again with LF line ends, so the client gets exactly the events
 * the hook saw; comments (keep-alives) and `retry` pass, an event the stream ends in the middle of is
 * dropped (a client would not dispatch it either).
 */
export class SseEventRewriter {
  private out = '';
  private readonly parser: SseParser;
  private readonly decoder = new TextDecoder();
  private readonly encoder = new TextEncoder();

  /** `rewrite` gets each event as {@link eventText} writes it, and returns it (changed), or '' to drop it. */
  constructor(rewrite: (event: string) => string) {
    this.parser = new SseParser({
      onEvent: (event) => {
        const text = rewrite(eventText(event));
        if (text) this.out += `${text}\n\n`;
      },
      onComment: (comment) => (this.out += `: ${comment}\n\n`),
      onRetry: (ms) => (this.out += `retry: ${ms}\n\n`),
    });
  }

  /** The complete events so far, rewritten; throws an UpstreamError when an event grows past the rewrite limit. */
  push(chunk: Uint8Array): Uint8Array {
    this.parser.feed(this.decoder.decode(chunk, { stream: true }));
    if (this.parser.buffered > REWRITE_BODY_LIMIT) throw new UpstreamError(502, 'upstream_unavailable', 'an event to rewrite is too large');
    return this.take();
  }

  /** What is left at the end of the stream: an event without its closing blank line is not one. */
  flush(): Uint8Array {
    this.parser.feed(this.decoder.decode());
    return this.take();
  }

  private take(): Uint8Array {
    const out = this.out;
    this.out = '';
    return this.encoder.encode(out);
  }
}

/** Sends a request upstream and the answer back. Node uses undici directly; elsewhere, fetch. */
export interface Forwarder {
  forward(c: Context<GatewayEnv>, target: UpstreamTarget, hooks: ForwardHooks): Promise<Response>;
  /** The caller's address as this forwarder sends it in `X-Forwarded-For` (for the gateway's own upstream requests: src/gateway/mux/). */
  clientAddress?(c: Context<GatewayEnv>): string | undefined;
  close(): Promise<void>;
}

/** Thrown by forwarders for upstream failures; the status is 502 or 504. */
export class UpstreamError extends Error {
  constructor(readonly status: 502 | 504, readonly rejection: 'upstream_unavailable' | 'upstream_timeout' | 'upstream_dpop_nonce' | 'upstream_invalid_answer', message: string) {
    super(message);
  }

  /** What the client is told: internal addresses and error text stay in the audit log. */
  get publicMessage(): string {
    return this.status === 504 ? 'the upstream server did not answer in time' : 'the upstream server is unavailable';
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'ETIMEDOUT', 'TimeoutError']);

export function upstreamError(error: unknown): UpstreamError {
  const e = error as { code?: unknown; name?: unknown; message?: string; cause?: { code?: unknown } };
  // String codes only: a DOMException (fetch aborted by AbortSignal.timeout) has a legacy numeric
  // `code` (23), and its `name` (TimeoutError) is what says it timed out.
  const named = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);
  const code = named(e.code) ?? named(e.cause?.code) ?? named(e.name) ?? '';
  return TIMEOUT_CODES.has(code)
    ? new UpstreamError(504, 'upstream_timeout', `upstream did not answer in time (${code})`)
    : new UpstreamError(502, 'upstream_unavailable', `upstream unavailable (${code || e.message})`);
}

/** RFC 9110 §11.6.1: `auth-scheme` or `auth-param` name (a token), then `= token / quoted-string` for a parameter. */
const CHALLENGE_ITEM = /[\s,]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[!#$%&'*+\-.^_`|~0-9A-Za-z]+))?/gy;

/** The parameters of the `DPoP` challenge of a `WWW-Authenticate` value (several challenges may share one), lower-case names. */
function dpopChallengeParams(header: string): Record<string, string> | undefined {
  let scheme: string | undefined;
  let params: Record<string, string> | undefined;
  CHALLENGE_ITEM.lastIndex = 0;
  for (let match = CHALLENGE_ITEM.exec(header); match && match[0] !== ''; match = CHALLENGE_ITEM.exec(header)) {
    const [, name, value] = match;
    if (value === undefined) {
      scheme = name!.toLowerCase();
      if (scheme === 'dpop') params ??= {};
    } else if (scheme === 'dpop') {
      params![name!.toLowerCase()] = value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value;
    }
  }
  return params;
}

/**
 * RFC 9449 §9: the upstream refused the gateway's proof for want of a (fresh) nonce — a 401 whose
 * `DPoP` challenge says `error="use_dpop_nonce"`, with the nonce to use in `DPoP-Nonce`. Returns
 * that nonce, or undefined for any other answer.
 */
export function upstreamNonceDemand(status: number, wwwAuthenticate: string | string[] | null | undefined, nonce: string | string[] | null | undefined): string | undefined {
  if (status !== 401 || typeof nonce !== 'string' || nonce === '' || !wwwAuthenticate) return undefined;
  const params = dpopChallengeParams(Array.isArray(wwwAuthenticate) ? wwwAuthenticate.join(', ') : wwwAuthenticate);
  return params?.error === 'use_dpop_nonce' ? nonce : undefined;
}

/** The upstream asked again for a nonce after the retry that carried the one it gave: 502, not its 401 (the challenge was the gateway's, not the caller's). */
export function nonceRetryRefused(): UpstreamError {
  return new UpstreamError(502, 'upstream_dpop_nonce', 'the upstream answered 401 use_dpop_nonce again to the retry with the DPoP nonce it gave');
}

/**
 * Headers for the upstream: the caller's, minus hop-by-hop (fixed and those named in Connection),
 * credentials and anything claiming to be the gateway's or a proxy's (`X-Mandate-*`,
 * `X-Forwarded-*`, `X-Real-IP`, …), plus forwarding info the gateway sets itself.
 */
export function upstreamHeaders(incoming: [string, string | string[] | undefined][], info: UpstreamInfo): Record<string, string> {
  const out: Record<string, string> = {};
  const named = connectionNamed(incoming);
  for (const [rawName, value] of incoming) {
    const name = rawName.toLowerCase();
    if (value === undefined || !forwardable(name, named)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return addForwarding(out, info);
}

/**
 * `upstreamHeaders` for headers already in a record with lower-case names (Node's
 * `IncomingMessage.headers`), without an entries array per request.
 */
export function upstreamHeadersOf(incoming: Record<string, string | string[] | undefined>, info: UpstreamInfo): Record<string, string> {
  const out: Record<string, string> = {};
  const connection = incoming.connection;
  // `Connection: keep-alive` (most requests) names only a field that is hop-by-hop anyway.
  const named = connection === undefined || connection === 'keep-alive' ? undefined : addConnectionTokens(undefined, connection);
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || !forwardable(name, named)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return addForwarding(out, info);
}

interface UpstreamInfo {
  authorization?: string;
  host: string;
  proto: string;
  peer?: string;
  requestId?: string;
}

function addForwarding(out: Record<string, string>, info: UpstreamInfo): Record<string, string> {
  if (info.authorization) out.authorization = info.authorization;
  out['x-forwarded-host'] = info.host;
  out['x-forwarded-proto'] = info.proto;
  if (info.peer) out['x-forwarded-for'] = info.peer;
  // The audit stamp: the upstream can log the same request id as the gateway's audit event.
  if (info.requestId) out['x-request-id'] = info.requestId;
  return out;
}

/** Response headers for the client: the upstream's minus hop-by-hop (its Content-Length stays: the body passes unchanged); SSE marked unbuffered for proxies in front of us. */
export function clientHeaders(upstream: Iterable<[string, string | string[] | undefined]>, extra: Record<string, string>, dropCookie?: (name: string) => boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [rawName, value] of upstream) addClientHeader(out, rawName.toLowerCase(), value, dropCookie);
  return finishClientHeaders(out, extra);
}

/** `clientHeaders` for headers already in a record with lower-case names (undici's), without an entries array. */
export function clientHeadersOf(upstream: Record<string, string | string[] | undefined>, extra: Record<string, string>, dropCookie?: (name: string) => boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) addClientHeader(out, name, upstream[name], dropCookie);
  return finishClientHeaders(out, extra);
}

function addClientHeader(out: Record<string, string | string[]>, name: string, value: string | string[] | undefined, dropCookie: ((name: string) => boolean) | undefined): void {
  // An upstream's DPoP-Nonce is for the gateway's proofs (the caller's never reach it): a caller
  // would take it for the gateway's own nonce.
  if (value === undefined || HOP_BY_HOP.has(name) || name === 'dpop-nonce') return;
  if (name === 'set-cookie' && dropCookie) {
    const kept = (Array.isArray(value) ? value : [value]).filter((cookie) => !dropCookie(cookie.slice(0, Math.max(0, cookie.indexOf('='))).trim()));
    if (kept.length > 0) out[name] = kept;
    return;
  }
  out[name] = value;
}

function finishClientHeaders(out: Record<string, string | string[]>, extra: Record<string, string>): Record<string, string | string[]> {
  if (isEventStream(out['content-type'] as string | undefined)) {
    out['x-accel-buffering'] = 'no';
    out['cache-control'] ??= 'no-cache';
  }
  for (const name in extra) out[name] = extra[name]!;
  return out;
}

/** Adds the gateway's headers for the upstream; an empty value removes the caller's header of that name. */
export function setUpstreamHeaders(headers: Record<string, string>, extra: Record<string, string>): void {
  for (const name in extra) {
    const value = extra[name]!;
    if (value === '') delete headers[name];
    else headers[name] = value;
  }
}

/** Who is calling, for an upstream that trusts the gateway (`identity_headers`). */
export function identityHeaders(principal: Principal): Record<string, string> {
  const headers: Record<string, string> = { 'x-mandate-sub': principal.sub, 'x-mandate-scope': principal.scopes.join(' ') };
  if (principal.clientId) headers['x-mandate-client-id'] = principal.clientId;
  if (principal.actors.length > 0) headers['x-mandate-act'] = JSON.stringify(principal.cel.act);
  return headers;
}

/**
 * The upstream path for a request path: the route prefix replaced by `rewrite`, or by the
 * upstream URL's own path. Prepared once per route; a string operation per request.
 */
export function upstreamPath(route: Pick<RouteConfig, 'path' | 'rewrite'>, upstream: URL): (path: string, search: string) => string {
  const prefixLength = route.path.replace(/\/$/, '').length;
  const base = (route.rewrite ?? upstream.pathname).replace(/\/$/, '');
  return (path, search) => `${`${base}${path.slice(prefixLength)}` || '/'}${search}`;
}

/**
 * The proxy, last in the chain: forwards the validated body unchanged (or nothing, for GET and
 * DELETE), streams the answer back, and maps upstream failures to 502/504 with a JSON-RPC body.
 */
export function proxy(route: RouteConfig, forwarder: Forwarder, sessions?: SessionStore): MiddlewareHandler<GatewayEnv> {
  if (!route.upstream) throw new Error(`route ${route.path}: several upstreams are served by the multiplexer, not the proxy`);
  const upstream = new URL(route.upstream);
  // Once: URL's origin getter builds a new string each time (and the forwarder's pool lookup hashes it).
  const origin = upstream.origin;
  const pathFor = upstreamPath(route, upstream);
  return async function proxyMiddleware(c) {
    const mcp = c.get('mcp');
    const raw = c.req.url;
    const query = raw.indexOf('?');
    const target: UpstreamTarget = { origin, path: pathFor(c.req.path, query < 0 ? '' : raw.slice(query)), method: c.req.method, body: mcp.body };
    const rewriteResult = c.get('rewriteResult');
    const id = mcp.message?.kind === 'request' ? mcp.message.id : undefined;
    const principal = c.get('principal');
    try {
      const response = await forwarder.forward(c, target, {
        timeouts: route.timeouts,
        rewrite: rewriteResult ? (body, contentType) => rewriteResponse(body, contentType, id, rewriteResult) : undefined,
        tap: (contentType) => new ResponseTap(contentType, id),
        responseHeaders: c.get('responseHeaders'),
        // The session the request came with was checked (and renewed) by the protection filter.
        onSession: (sessionId) => (sessionId === mcp.sessionId ? undefined : sessions?.bind(sessionId, { sub: principal.sub, clientId: principal.clientId })),
        upstreamHeaders: route.identity_headers ? identityHeaders(principal) : {},
      });
      const upstreamStatus = c.get('audit').upstream_status ?? 0;
      if (c.req.method === 'DELETE' && mcp.sessionId !== undefined && upstreamStatus >= 200 && upstreamStatus < 300) {
        // Ended upstream: its id is now refused (404) on every gateway. Not awaited: the answer is
        // already sent and its audit event must not wait. If the store cannot be reached, the
        // binding lapses with its idle lifetime; the upstream refuses the ended id anyway.
        const ending = Promise.resolve(sessions?.end(mcp.sessionId)).catch(() => undefined);
        // A Worker cancels what a request left running once its response is sent, unless told to wait.
        waitUntil(c, ending);
      }
      return response;
    } catch (error) {
      if (error instanceof SessionStoreUnavailable) {
        // The upstream opened a session that cannot be bound: its id is not handed out.
        return refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'temporarily_unavailable: retry shortly', rejection: 'session_store_unavailable', reason: error.message, decision: 'error', headers: { 'Retry-After': '1' } });
      }
      const failure = error instanceof UpstreamError ? error : upstreamError(error);
      return refuse(c, { status: failure.status, code: GATEWAY_ERRORS.unavailable, message: failure.publicMessage, rejection: failure.rejection, reason: failure.message, decision: 'error' });
    }
  };
}

/** Keeps `promise` running past the response where the runtime needs to be told (Workers' `ctx.waitUntil`); Node has no execution context and needs nothing. */
function waitUntil(c: Context<GatewayEnv>, promise: Promise<unknown>): void {
  let ctx: { waitUntil(promise: Promise<unknown>): void } | undefined;
  try {
    ctx = c.executionCtx;
  } catch {
    return;
  }
  ctx.waitUntil(promise);
}

/** A Headers' entries; each Set-Cookie kept apart (joined, they could not be told apart: RFC 6265 §3). */
function headerEntries(headers: Headers): [string, string | string[]][] {
  const entries: [string, string | string[]][] = [];
  headers.forEach((value, name) => {
    if (name !== 'set-cookie') entries.push([name, value]);
  });
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) entries.push(['set-cookie', cookies]);
  return entries;
}

function toHeaders(record: Record<string, string | string[]>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(record)) for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  return headers;
}

export interface FetchForwarderOptions {
  /**
   * The caller's address, sent upstream as `X-Forwarded-For` (the Node gateway sends its socket's
   * peer). Only a runtime that sets it itself may say: a Worker reads `CF-Connecting-IP`, which
   * Cloudflare's edge writes over whatever the client sent. Without it no `X-Forwarded-For` is sent
   * (never the client's own: `upstreamHeaders` drops it).
   */
  clientAddress?: (request: Request) => string | undefined;
}

/**
 * The portable forwarder (Cloudflare Workers, Deno, Bun): fetch, with the body streamed through.
 * Redirects are not followed (`redirect: 'manual'`), as the Node forwarder (undici's dispatcher)
 * never follows them: a 3xx reaches the client as the upstream sent it, Location unchanged, and
 * the request — identity headers, the app's cookies, the body — goes nowhere but the upstream.
 */
export function fetchForwarder(fetchImpl: typeof fetch = fetch, options: FetchForwarderOptions = {}): Forwarder {
  return {
    async forward(c, target, hooks) {
      const audit = c.get('audit');
      const headers = upstreamHeaders(headerEntries(c.req.raw.headers), {
        authorization: c.get('upstreamAuthorization'),
        host: requestHeader(c, 'host') ?? '',
        proto: new URL(c.req.url).protocol.replace(':', ''),
        peer: options.clientAddress?.(c.req.raw) || undefined,
        requestId: audit.request_id,
      });
      setUpstreamHeaders(headers, hooks.upstreamHeaders);
      // With mediation.dpop, the gateway's own proof for the upstream (the caller's never goes on).
      const upstreamDpop = c.get('upstreamDpop');
      if (upstreamDpop) headers.dpop = upstreamDpop;
      const started = performance.now();
      const send = async () => {
        // response_ms bounds the wait for the upstream's answer, not the answer (an SSE stream may last):
        // a timer cleared once the headers are in, not AbortSignal.timeout, which would cut the body too.
        const abort = new AbortController();
        const timer = setTimeout(() => abort.abort(new DOMException(`no answer in ${hooks.timeouts.response_ms} ms`, 'TimeoutError')), hooks.timeouts.response_ms);
        try {
          return await fetchImpl(`${target.origin}${target.path}`, { method: target.method, headers, body: (target.bytes as BodyInit | undefined) ?? target.body, redirect: 'manual', signal: abort.signal });
        } catch (error) {
          throw upstreamError(error);
        } finally {
          clearTimeout(timer);
        }
      };
      let response = await send();
      // RFC 9449 §9, once: the body is a buffered string or bytes (never a stream), so it can go again.
      const retry = c.get('upstreamDpopRetry');
      const demanded = upstreamDpop && retry ? upstreamNonceDemand(response.status, response.headers.get('www-authenticate'), response.headers.get('dpop-nonce')) : undefined;
      if (demanded) {
        await response.body?.cancel();
        audit.upstream_dpop_nonce = 'retried';
        headers.dpop = await retry!(demanded);
        response = await send();
        const again = upstreamNonceDemand(response.status, response.headers.get('www-authenticate'), response.headers.get('dpop-nonce'));
        if (again) {
          await response.body?.cancel();
          c.get('upstreamDpopNonce')?.(again);
          audit.upstream_status = response.status;
          throw nonceRetryRefused();
        }
      }
      audit.upstream_status = response.status;
      const dpopNonce = response.headers.get('dpop-nonce');
      if (upstreamDpop && dpopNonce) c.get('upstreamDpopNonce')?.(dpopNonce);
      const session = response.headers.get('mcp-session-id');
      if (session) {
        try {
          await hooks.onSession(session);
        } catch (error) {
          await response.body?.cancel();
          throw error;
        }
      }
      audit.upstream_latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
      const contentType = response.headers.get('content-type') ?? undefined;
      const outHeaders = clientHeaders(headerEntries(response.headers), hooks.responseHeaders, hooks.dropCookie);
      if (hooks.rewrite && response.ok && (hooks.rewrites?.(contentType) ?? true)) {
        const body = await hooks.rewrite(await readLimited(response.body), contentType);
        delete outHeaders['content-length'];
        const tap = hooks.tap(contentType);
        tap.push(new TextEncoder().encode(body));
        Object.assign(audit, tap.finish());
        return new Response(body, { status: response.status, headers: toHeaders(outHeaders) });
      }
      const tap = hooks.tap(contentType);
      const rewriter = hooks.events && isEventStream(contentType) ? new SseEventRewriter(hooks.events) : undefined;
      if (rewriter) delete outHeaders['content-length'];
      let finish!: () => void;
      c.set('finished', new Promise<void>((resolve) => (finish = resolve)));
      const upstreamBody = response.body;
      if (!upstreamBody) finish();
      // Pulled chunk by chunk (an SSE event reaches the client as soon as the upstream sends it),
      // and the event is written however the stream ends: complete, cut by the upstream, or
      // cancelled by a client that went away (a TransformStream's flush runs on the first only).
      const reader = upstreamBody?.getReader();
      let ended = !reader;
      const end = (outcome: Partial<GatewayAuditEvent>) => {
        if (ended) return false;
        ended = true;
        Object.assign(audit, outcome);
        finish();
        return true;
      };
      // The client went away first: nothing to answer, and not the upstream's fault. The runtime
      // cancels the stream when a write to the client fails (workerd: at the upstream's next chunk).
      const clientClosed = (reason: unknown) => {
        if (end({ decision: 'error', rejection: 'client_closed', status: 499 })) void reader!.cancel(reason).catch(() => undefined);
      };
      const body =
        reader &&
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            // A chunk the rewriter keeps (part of an event) or drops gives nothing: read on, or the reader waits for a pull that never comes.
            for (;;) {
              let chunk: ReadableStreamReadResult<Uint8Array>;
              try {
                chunk = await reader.read();
              } catch (error) {
                // Mid-stream failure: the status is already sent; cut the stream so the client notices.
                if (end({ decision: 'error', rejection: 'upstream_interrupted', reason: (error as Error)?.message ?? String(error) })) controller.error(error);
                return;
              }
              if (chunk.done) {
                const rest = rewriter?.flush();
                if (rest?.byteLength) {
                  tap.push(rest);
                  controller.enqueue(rest);
                }
                if (end(tap.finish())) controller.close();
                return;
              }
              let bytes = chunk.value;
              if (rewriter) {
                try {
                  bytes = rewriter.push(chunk.value);
                } catch (error) {
                  if (end({ decision: 'error', rejection: 'upstream_interrupted', reason: (error as Error).message })) controller.error(error);
                  void reader.cancel(error).catch(() => undefined);
                  return;
                }
                if (bytes.byteLength === 0) continue;
              }
              tap.push(bytes);
              controller.enqueue(bytes);
              return;
            }
          },
          cancel: clientClosed,
        });
      return new Response(body ?? null, { status: response.status, headers: toHeaders(outHeaders) });
    },
    clientAddress: (c) => options.clientAddress?.(c.req.raw) || undefined,
    close: async () => {},
  };
}
