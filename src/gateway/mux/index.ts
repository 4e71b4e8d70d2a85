import type { Context, MiddlewareHandler } from 'hono';
import { JSON_RPC_ERRORS, PROTOCOL_STATELESS } from '../mcp-message.ts';
import { identityHeaders, REWRITE_BODY_LIMIT, upstreamError, upstreamHeaders, UpstreamError, type Forwarder } from '../filters/proxy.ts';
import { GATEWAY_ERRORS, refuse } from '../filters/refuse.ts';
import { IDENTITY, judgeToolList } from '../pins/forwarder.ts';
import { ResponseTap, isEventStream, rewriteResponse } from '../response-tap.ts';
import type { CompiledRoute } from '../route.ts';
import { SessionStoreUnavailable, type SessionStore, type UpstreamSessions } from '../sessions.ts';
import type { GatewayEnv } from '../types.ts';
import { mergeStreams, openStream } from './get-stream.ts';
import { gatewayName, onlyTheResponse, renameCallEvent, RESOURCE_SCHEME_PREFIX, RESULT_RENAMES, upstreamRequestOf } from './names.ts';
import { exchange, type MuxUpstream, type UpstreamAnswer } from './upstream-client.ts';

/** The MCP revisions the gateway negotiates in its own `initialize` answer, newest first (as the SDK: the client's if known, else the newest). */
export const MUX_PROTOCOL_VERSIONS = ['2026-07-28', '2025-11-25', '2025-06-18', '2025-03-26'];

/**
 * The id of a request the gateway makes itself (a list page, logging/setLevel, initialize) at an
 * upstream session the client's requests also use: one no client request has, so that neither
 * answer is taken for the other.
 */
const ownId = () => `mandate-gateway:${crypto.randomUUID()}`;

/** Pages of one upstream's list the gateway follows (`nextCursor`) before it stops: the merged list is one page. */
const MAX_PAGES = 20;

/** Lists the gateway merges: the method, the result field, and the field that is prefixed. */
const LISTS: Record<string, { field: string; key: 'name' | 'uri' | 'uriTemplate' }> = {
  'tools/list': { field: 'tools', key: 'name' },
  'prompts/list': { field: 'prompts', key: 'name' },
  'resources/list': { field: 'resources', key: 'uri' },
  'resources/templates/list': { field: 'resourceTemplates', key: 'uriTemplate' },
};

/** Requests dispatched to one upstream: the param that names it there. */
const DISPATCHED: Record<string, 'name' | 'uri'> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'resources/subscribe': 'uri',
  'resources/unsubscribe': 'uri',
};

/** A merged list over its byte budget: the whole list is refused (502), not one upstream left out. */
class ListTooLarge extends UpstreamError {
  constructor(limit: number) {
    super(502, 'upstream_unavailable', `the lists to merge are larger than ${limit} bytes in all`);
  }
}

/** `fetchImpl` with the bodies of all its answers counted against one budget: reading past it fails with {@link ListTooLarge}. */
function budgetedFetch(fetchImpl: typeof fetch, limit: number): typeof fetch {
  let left = limit;
  return async (input, init) => {
    const response = await fetchImpl(input, init);
    if (!response.body || [101, 204, 205, 304].includes(response.status)) return response;
    const body = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          left -= chunk.byteLength;
          if (left < 0) controller.error(new ListTooLarge(limit));
          else controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

interface JsonRpcRequest {
  jsonrpc: '2.0';
  id?: string | number;
  method: string;
  params?: Record<string, unknown>;
}

export interface MuxOptions {
  fetch?: typeof fetch;
  serverInfo?: { name: string; version: string };
}

/**
 * Several MCP servers behind one route (docs/gateway.md "Several MCP servers behind one route"):
 * the last filter of such a route, instead of the proxy. The gateway is the MCP server the client
 * sees: it answers `initialize` and `ping`, opens a session at every upstream at once (one round
 * trip, in parallel, when the client's session opens — so no later request has to, and no two
 * replicas race to open the same one), keeps their session ids under its own in the session store,
 * merges the lists with names prefixed, and dispatches each call to its upstream with the name
 * it has there, through the route's forwarder (so an SSE answer streams through).
 */
export function multiplex(route: CompiledRoute, forwarder: Forwarder, sessions: SessionStore, options: MuxOptions = {}): MiddlewareHandler<GatewayEnv> {
  const config = route.config;
  if (!sessions.setUpstreams || !sessions.upstreams) throw new Error(`route ${config.path}: the session store cannot keep upstream sessions (setUpstreams, upstreams)`);
  const upstreams: MuxUpstream[] = (config.upstreams ?? []).map((upstream) => ({ name: upstream.name, url: new URL(upstream.url) }));
  const byName = new Map(upstreams.map((upstream) => [upstream.name, upstream]));
  const separator = config.separator;
  const fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  const serverInfo = options.serverInfo ?? { name: 'mandate-gateway', version: '1' };
  /** Upstreams that answered `initialize` without a session, with the revision they negotiated (see requestSessions). */
  const sessionless = new Map<string, { session: string; protocol?: string }>();
  /** Upstream sessions opened for one request only (see requestSessions), ended once it is answered. */
  const releaseAfter = new WeakMap<Context<GatewayEnv>, UpstreamSessions>();
  /** Requests in flight on this instance, for `notifications/cancelled`: session + id → upstream. */
  const inFlight = new Map<string, string>();

  const split = (name: string): { upstream: MuxUpstream; name: string } | undefined => {
    const cut = name.indexOf(separator);
    const upstream = cut > 0 ? byName.get(name.slice(0, cut)) : undefined;
    return upstream && { upstream, name: name.slice(cut + separator.length) };
  };
  const splitUri = (uri: string): { upstream: MuxUpstream; name: string } | undefined => {
    if (!uri.startsWith(RESOURCE_SCHEME_PREFIX)) return undefined;
    const colon = uri.indexOf(':');
    const upstream = colon > 0 ? byName.get(uri.slice(RESOURCE_SCHEME_PREFIX.length, colon)) : undefined;
    return upstream && { upstream, name: uri.slice(colon + 1) };
  };

  /** Headers for the gateway's own requests to an upstream: the caller's minus credentials and forwarding headers, as the proxy's. */
  const baseHeaders = (c: Context<GatewayEnv>): Record<string, string> => {
    const entries: [string, string][] = [];
    c.req.raw.headers.forEach((value, name) => entries.push([name, value]));
    const headers = upstreamHeaders(entries, { host: c.req.header('host') ?? '', proto: new URL(c.req.url).protocol.replace(':', ''), peer: forwarder.clientAddress?.(c), requestId: c.get('audit').request_id });
    if (config.identity_headers) Object.assign(headers, identityHeaders(c.get('principal')));
    delete headers['mcp-session-id'];
    delete headers['content-length'];
    return headers;
  };

  const answer = (c: Context<GatewayEnv>, body: unknown, extra: Record<string, string> = {}) => {
    const audit = c.get('audit');
    const message = body as { result?: unknown; error?: { code: number } };
    if (message.error) {
      audit.outcome = 'error';
      audit.jsonrpc_error = message.error.code;
    } else {
      audit.outcome = 'result';
    }
    return c.json(body as object, 200, { ...c.get('responseHeaders'), ...extra });
  };

  /** What an upstream gets for the session: its own session id (empty: none) and the revision it negotiated. */
  const sessionOf = (map: UpstreamSessions | undefined, name: string): Record<string, string> => {
    const entry = map?.[name];
    return { 'mcp-session-id': entry?.session ?? '', ...(entry?.protocol ? { 'mcp-protocol-version': entry.protocol } : {}) };
  };

  const sessionHeaders = (sessionId: string | undefined): Record<string, string> => (sessionId ? { 'mcp-session-id': sessionId } : {});

  /**
   * Whether the client has gone (its connection closed while the filters or the upstreams were
   * awaited): the runtime aborts the request's signal (Node's adapter; workerd with the flag
   * `enable_request_signal`). No session and no GET stream is opened upstream for it (the
   * forwarders do not forward a call for it either): they would be held open for nobody.
   */
  const clientGone = (c: Context<GatewayEnv>): boolean => c.req.raw.signal?.aborted === true;
  const gone = (c: Context<GatewayEnv>) => refuse(c, { status: 499, code: GATEWAY_ERRORS.unavailable, message: 'the client went away', rejection: 'client_closed', reason: 'the client went away before the answer', decision: 'error' });

  /** Opens a session at every upstream at once, in parallel (`initialize`, then `notifications/initialized`); what failed says why. */
  const openUpstreams = (c: Context<GatewayEnv>, params: Record<string, unknown>, protocolVersion: string, at: MuxUpstream[] = upstreams) => {
    const headers = { ...baseHeaders(c), 'mcp-protocol-version': protocolVersion };
    const timeoutMs = config.timeouts.response_ms;
    return Promise.all(
      at.map(async (upstream) => {
        try {
          const init = await exchange(fetchImpl, upstream, { method: 'POST', headers, timeoutMs, message: { jsonrpc: '2.0', id: ownId(), method: 'initialize', params: { ...params, protocolVersion } } });
          if (init.error || init.status >= 300) return { upstream, failed: `initialize answered ${init.status} ${init.error?.message ?? ''}`.trim() };
          const sessionId = init.sessionId ?? '';
          // The revision this upstream agreed to: what it is spoken to in for the rest of the session.
          const negotiated = (init.result as { protocolVersion?: unknown })?.protocolVersion;
          const protocol = typeof negotiated === 'string' ? negotiated : undefined;
          await exchange(fetchImpl, upstream, { method: 'POST', headers: { ...headers, 'mcp-session-id': sessionId, ...(protocol ? { 'mcp-protocol-version': protocol } : {}) }, timeoutMs, message: { jsonrpc: '2.0', method: 'notifications/initialized' } });
          return { upstream, sessionId, protocol, capabilities: ((init.result as { capabilities?: Record<string, unknown> })?.capabilities ?? {}) as Record<string, unknown> };
        } catch (error) {
          return { upstream, failed: (error as Error).message };
        }
      }),
    );
  };

  /** Ends the upstream sessions of `map` (those that have one), ignoring failures. */
  const releaseSessions = (c: Context<GatewayEnv>, map: UpstreamSessions) =>
    Promise.all(
      upstreams
        .filter((upstream) => map[upstream.name]?.session)
        .map((upstream) => exchange(fetchImpl, upstream, { method: 'DELETE', headers: { ...baseHeaders(c), ...sessionOf(map, upstream.name) }, timeoutMs: config.timeouts.response_ms }).catch(() => undefined)),
    );

  /**
   * A request without a gateway session (a client on the stateless revision, 2026-07-28): every
   * upstream is still spoken to in the revision it negotiated, and one on an older revision needs a
   * session. So such a request gets upstream sessions of its own at the upstreams it needs (the
   * call's, or all for a list), opened in parallel and ended once it is answered (a streamed answer,
   * when its stream ends). Never shared: two requests, even of one caller, never meet in an upstream
   * session (their ids, progress tokens and the upstream's own requests could be taken for each
   * other's), and nothing is kept that could leak. An upstream that answered `initialize` without a
   * session needs none: remembered (with its revision), it is not opened again.
   */
  const requestSessions = async (c: Context<GatewayEnv>, at: MuxUpstream[]): Promise<UpstreamSessions> => {
    const map: UpstreamSessions = {};
    const toOpen = at.filter((upstream) => {
      const known = sessionless.get(upstream.name);
      if (known) map[upstream.name] = known;
      return !known;
    });
    if (toOpen.length === 0) return map;
    const protocolVersion = c.get('mcp').protocolVersion || MUX_PROTOCOL_VERSIONS[0]!;
    const opened = await openUpstreams(c, { capabilities: {}, clientInfo: serverInfo }, protocolVersion, toOpen);
    for (const one of opened) {
      if (!('sessionId' in one)) continue;
      map[one.upstream.name] = { session: one.sessionId!, ...(one.protocol ? { protocol: one.protocol } : {}) };
      if (!one.sessionId) sessionless.set(one.upstream.name, map[one.upstream.name]!);
    }
    releaseAfter.set(c, map);
    const failed = opened.filter((one) => 'failed' in one);
    if (Object.keys(map).length === 0) throw new UpstreamError(502, 'upstream_unavailable', failed.map((one) => `${one.upstream.name}: ${one.failed}`).join('; '));
    if (failed.length > 0) c.get('audit').reason = `left out: ${failed.map((one) => `${one.upstream.name} (${one.failed})`).join('; ')}`;
    return map;
  };

  /**
   * Each upstream's session for the request: those of the client's gateway session, or — a client
   * without one (2026-07-28) — the request's own ({@link requestSessions}). Undefined before a
   * client of a revision with sessions has one (its initialize).
   */
  const upstreamSessions = async (c: Context<GatewayEnv>, at: MuxUpstream[] = upstreams): Promise<UpstreamSessions | undefined> => {
    const mcp = c.get('mcp');
    const sessionId = mcp.sessionId;
    if (sessionId === undefined) return mcp.protocolVersion >= PROTOCOL_STATELESS ? requestSessions(c, at) : undefined;
    // The protection filter has checked the session is the caller's; its upstream sessions were stored with it.
    return (await sessions.upstreams?.(sessionId)) ?? {};
  };

  const initialize = async (c: Context<GatewayEnv>, request: JsonRpcRequest) => {
    if (clientGone(c)) return gone(c);
    const params = request.params ?? {};
    const requested = typeof params.protocolVersion === 'string' ? params.protocolVersion : undefined;
    const accepted = config.protocol_versions ?? MUX_PROTOCOL_VERSIONS;
    const protocolVersion = requested && accepted.includes(requested) ? requested : (MUX_PROTOCOL_VERSIONS.find((v) => accepted.includes(v)) ?? accepted[0]!);
    const opened = await openUpstreams(c, params, protocolVersion);
    const failed = opened.filter((one) => 'failed' in one);
    if (failed.length === upstreams.length) {
      throw new UpstreamError(502, 'upstream_unavailable', failed.map((one) => `${one.upstream.name}: ${one.failed}`).join('; '));
    }
    // An upstream that cannot be opened is left out of this session (its names are unknown until the client opens a new one).
    if (failed.length > 0) c.get('audit').reason = `left out: ${failed.map((one) => `${one.upstream.name} (${one.failed})`).join('; ')}`;
    const capabilities: Record<string, unknown> = {};
    const map: UpstreamSessions = {};
    for (const one of opened) {
      if (!('sessionId' in one)) continue;
      map[one.upstream.name] = { session: one.sessionId!, ...(one.protocol ? { protocol: one.protocol } : {}) };
      for (const kind of ['tools', 'prompts', 'resources', 'logging', 'completions'] as const) {
        const offered = one.capabilities![kind] as Record<string, unknown> | undefined;
        if (!offered) continue;
        if (kind !== 'resources' && kind !== 'tools' && kind !== 'prompts') {
          capabilities[kind] = offered;
          continue;
        }
        // listChanged and subscribe when any upstream offers them: its notifications reach the client on the GET stream.
        const merged = (capabilities[kind] ?? {}) as Record<string, unknown>;
        if (offered.listChanged === true) merged.listChanged = true;
        if (kind === 'resources' && offered.subscribe === true) merged.subscribe = true;
        capabilities[kind] = merged;
      }
    }
    // Upstream sessions nobody will hold (a stateless revision, or a store that cannot keep them) are ended at once.
    const release = () => releaseSessions(c, map);
    // The client left while the upstream sessions opened: nobody will hold them.
    if (clientGone(c)) {
      await release();
      return gone(c);
    }
    let sessionId: string | undefined;
    if (protocolVersion < PROTOCOL_STATELESS) {
      sessionId = crypto.randomUUID();
      const principal = c.get('principal');
      try {
        await sessions.bind(sessionId, { sub: principal.sub, clientId: principal.clientId });
        await sessions.setUpstreams!(sessionId, map);
      } catch (error) {
        await release();
        throw error;
      }
      c.get('audit').session = sessionId;
    } else {
      await release();
    }
    return answer(c, { jsonrpc: '2.0', id: request.id, result: { protocolVersion, capabilities, serverInfo } }, sessionHeaders(sessionId));
  };

  /** All pages of one list from every upstream of the session, names prefixed. */
  const mergeList = async (c: Context<GatewayEnv>, request: JsonRpcRequest) => {
    const list = LISTS[request.method]!;
    const map = await upstreamSessions(c);
    const headers = baseHeaders(c);
    const failures: string[] = [];
    // One byte budget for every page of every upstream, as a one-upstream route's answer has.
    const counted = budgetedFetch(fetchImpl, REWRITE_BODY_LIMIT);
    const merged = await Promise.all(
      upstreams.map(async (upstream) => {
        if (map && !(upstream.name in map)) return [];
        const items: unknown[] = [];
        let cursor: string | undefined;
        try {
          for (let page = 0; page < MAX_PAGES; page++) {
            const reply: UpstreamAnswer = await exchange(counted, upstream, {
              method: 'POST',
              headers: { ...headers, ...sessionOf(map, upstream.name) },
              timeoutMs: config.timeouts.response_ms,
              message: { jsonrpc: '2.0', id: ownId(), method: request.method, params: cursor ? { cursor } : {} },
            });
            // An upstream without the capability answers -32601: nothing to merge.
            if (reply.error || reply.status >= 300) {
              if (reply.error?.code !== JSON_RPC_ERRORS.methodNotFound) failures.push(`${upstream.name}: ${reply.error?.message ?? reply.status}`);
              break;
            }
            const result = reply.result as Record<string, unknown> | undefined;
            const found = result?.[list.field];
            if (Array.isArray(found)) items.push(...found);
            cursor = typeof result?.nextCursor === 'string' ? result.nextCursor : undefined;
            if (!cursor) break;
          }
        } catch (error) {
          if (error instanceof ListTooLarge) throw error;
          failures.push(`${upstream.name}: ${(error as Error).message}`);
        }
        return items.map((item) => {
          const value = (item as Record<string, unknown>)[list.key];
          if (typeof value !== 'string') return item;
          return { ...(item as object), [list.key]: list.key === 'name' ? `${upstream.name}${separator}${value}` : gatewayName(upstream.name, value) };
        });
      }),
    );
    const audit = c.get('audit');
    // One upstream down does not hide the others; the answer is audited with what is missing.
    if (failures.length > 0) audit.reason = `not listed: ${failures.join('; ')}`;
    if (failures.length === upstreams.length) throw new UpstreamError(502, 'upstream_unavailable', failures.join('; '));
    let body = JSON.stringify({ jsonrpc: '2.0', id: request.id, result: { [list.field]: merged.flat() } });
    if (request.method === 'tools/list' && route.pins) body = await judgeToolList(audit, route.pins, body, 'application/json', request.id);
    let parsed = JSON.parse(body) as { result: unknown };
    const rewrite = c.get('rewriteResult');
    if (request.method === 'tools/list' && rewrite) parsed = { ...parsed, result: rewrite(parsed.result) };
    return answer(c, parsed, sessionHeaders(c.get('mcp').sessionId));
  };

  /** A call to the upstream its name (or URI) says, with the name it has there, through the route's forwarder. */
  const dispatch = async (c: Context<GatewayEnv>, request: JsonRpcRequest) => {
    // completion/complete names its prompt or resource in `ref` (MCP "Completion").
    const ref = request.method === 'completion/complete' ? (request.params?.ref as Record<string, unknown> | undefined) : undefined;
    const key = ref ? (ref.type === 'ref/resource' ? 'uri' : 'name') : DISPATCHED[request.method]!;
    const named = ref ? ref[key] : request.params?.[key];
    const target = typeof named === 'string' ? (key === 'uri' ? splitUri(named) : split(named)) : undefined;
    const map = await upstreamSessions(c, target ? [target.upstream] : []);
    if (!target || (map && !(target.upstream.name in map))) {
      return refuse(c, {
        status: 404,
        code: JSON_RPC_ERRORS.invalidParams,
        message: `${String(named)}: no upstream of this route has this ${key === 'uri' ? 'resource' : 'name'} (names are <upstream>${separator}<name>)`,
        rejection: 'unknown_upstream',
        reason: `no upstream for ${key} ${String(named)}`,
      });
    }
    const audit = c.get('audit');
    audit.upstream = target.upstream.name;
    const body = JSON.stringify({ ...request, params: ref ? { ...request.params, ref: { ...ref, [key]: target.name } } : { ...request.params, [key]: target.name } });
    const mcp = c.get('mcp');
    const renameResult = RESULT_RENAMES[request.method];
    const flight = mcp.sessionId !== undefined && request.id !== undefined ? `${mcp.sessionId}\0${JSON.stringify(request.id)}` : undefined;
    if (flight) inFlight.set(flight, target.upstream.name);
    try {
      const response = await forwarder.forward(
        c,
        { origin: target.upstream.url.origin, path: `${target.upstream.url.pathname}${target.upstream.url.search}`, method: 'POST', body },
        {
          timeouts: config.timeouts,
          tap: (contentType) => new ResponseTap(contentType, request.id),
          // An SSE answer streams event by event (progress and the upstream's own requests go on at
          // once); a JSON one is read whole: it must be the call's answer (a request in it would reach
          // the client unrenamed). Either way the result names resources by the gateway's URIs (read
          // contents, resource links, embedded resources), so the client's next read reaches this upstream.
          events: (event) => renameCallEvent(event, target.upstream.name, request.id, renameResult),
          rewrites: (contentType) => !isEventStream(contentType),
          rewrite: (text) => {
            const only = onlyTheResponse(text, request.id, request.method);
            return renameResult ? rewriteResponse(only, 'application/json', request.id, (result) => renameResult(result, target.upstream.name)) : only;
          },
          responseHeaders: { ...c.get('responseHeaders'), ...sessionHeaders(mcp.sessionId) },
          onSession: () => undefined,
          upstreamHeaders: {
            ...(config.identity_headers ? identityHeaders(c.get('principal')) : {}),
            // The answer is read (its events relayed, a JSON one checked): not compressed.
            ...IDENTITY,
            // The upstream's own session id (empty: none), and the name it knows (2026-07-28 Mcp-Name).
            ...sessionOf(map, target.upstream.name),
            'mcp-name': c.req.header('mcp-name') === undefined ? '' : target.name,
          },
        },
      );
      return response;
    } finally {
      if (flight) {
        const finished = c.get('finished');
        if (finished) void finished.then(() => inFlight.delete(flight));
        else inFlight.delete(flight);
      }
    }
  };

  /** Client notifications: `cancelled` to the upstream that has the request (every one if this instance does not know), the others to all. */
  const notify = async (c: Context<GatewayEnv>, message: JsonRpcRequest) => {
    const map = await upstreamSessions(c);
    const headers = baseHeaders(c);
    let targets = upstreams.filter((upstream) => !map || upstream.name in map);
    if (message.method === 'notifications/initialized') targets = []; // sent to each upstream when its session opened
    if (message.method === 'notifications/cancelled') {
      const sessionId = c.get('mcp').sessionId;
      const owner = sessionId === undefined ? undefined : inFlight.get(`${sessionId}\0${JSON.stringify(message.params?.requestId)}`);
      if (owner) {
        targets = targets.filter((upstream) => upstream.name === owner);
        c.get('audit').upstream = owner;
      }
    }
    await Promise.all(
      targets.map((upstream) =>
        exchange(fetchImpl, upstream, { method: 'POST', headers: { ...headers, ...sessionOf(map, upstream.name) }, timeoutMs: config.timeouts.response_ms, message }).catch(() => undefined),
      ),
    );
    return c.body(null, 202, c.get('responseHeaders'));
  };

  /** logging/setLevel: to every upstream of the session (one without logging answers -32601, which is fine). */
  const setLevel = async (c: Context<GatewayEnv>, request: JsonRpcRequest) => {
    const map = await upstreamSessions(c);
    const headers = baseHeaders(c);
    await Promise.all(
      upstreams
        .filter((upstream) => !map || upstream.name in map)
        .map((upstream) =>
          exchange(fetchImpl, upstream, { method: 'POST', headers: { ...headers, ...sessionOf(map, upstream.name) }, timeoutMs: config.timeouts.response_ms, message: { ...request, id: ownId() } }).catch(() => undefined),
        ),
    );
    return answer(c, { jsonrpc: '2.0', id: request.id, result: {} }, sessionHeaders(c.get('mcp').sessionId));
  };

  /** The client's answer to an upstream's request: to that upstream only, with its own id. */
  const reply = async (c: Context<GatewayEnv>, response: { jsonrpc: '2.0'; id?: string | number; result?: unknown; error?: unknown }) => {
    const origin = upstreamRequestOf(response.id);
    const upstream = origin && byName.get(origin.upstream);
    // Without a gateway session (2026-07-28) the request's upstream session ended with its answer.
    const map = c.get('mcp').sessionId === undefined ? {} : await upstreamSessions(c);
    if (!origin || !upstream || (map && !(upstream.name in map))) {
      return refuse(c, { status: 400, code: JSON_RPC_ERRORS.invalidRequest, message: 'an answer to a request no upstream of this route sent', rejection: 'invalid_request', reason: `answer id ${JSON.stringify(response.id)} names no upstream of the session` });
    }
    c.get('audit').upstream = upstream.name;
    const sent = await exchange(fetchImpl, upstream, { method: 'POST', headers: { ...baseHeaders(c), ...sessionOf(map, upstream.name) }, timeoutMs: config.timeouts.response_ms, message: { ...response, id: origin.id } });
    c.get('audit').upstream_status = sent.status;
    if (sent.status < 200 || sent.status >= 300) throw new UpstreamError(502, 'upstream_unavailable', `upstream ${upstream.name} answered ${sent.status} to the client's answer`);
    return c.body(null, 202, c.get('responseHeaders'));
  };

  /**
   * GET, the stream of the session's unsolicited messages: a GET stream to every upstream of the
   * session that offers one, merged into one (src/gateway/mux/get-stream.ts). An upstream answering
   * 405 is left out; none offering one is a 405 (MCP 2025-11-25 transports), all failing a 502.
   * Audited once, when the stream ends, as the proxy audits a GET stream.
   */
  const listen = async (c: Context<GatewayEnv>) => {
    const sessionId = c.get('mcp').sessionId;
    if (sessionId === undefined) return refuse(c, { status: 400, code: JSON_RPC_ERRORS.invalidRequest, message: 'GET needs an Mcp-Session-Id', rejection: 'no_session' });
    if (clientGone(c)) return gone(c);
    const map = (await sessions.upstreams?.(sessionId)) ?? {};
    const headers = baseHeaders(c);
    const opened = await Promise.all(upstreams.filter((upstream) => upstream.name in map).map((upstream) => openStream(fetchImpl, upstream, { ...headers, ...sessionOf(map, upstream.name) }, config.timeouts.response_ms)));
    const streaming = opened.filter((one) => 'body' in one);
    // The client left while the streams opened: they are closed at once, not handed to nobody.
    if (clientGone(c)) {
      for (const one of streaming) {
        void one.body.cancel().catch(() => undefined);
        one.abort.abort();
      }
      return gone(c);
    }
    const failed = opened.filter((one) => 'failed' in one).map((one) => `${one.upstream.name}: ${one.failed}`);
    const audit = c.get('audit');
    const notes = [...(streaming.length ? [`streams: ${streaming.map((one) => one.upstream.name).join(', ')}`] : []), ...(failed.length ? [`left out: ${failed.join('; ')}`] : [])];
    if (streaming.length === 0) {
      if (failed.length > 0) throw new UpstreamError(502, 'upstream_unavailable', failed.join('; '));
      return refuse(c, { status: 405, code: JSON_RPC_ERRORS.invalidRequest, message: 'no upstream of this route offers a GET stream', rejection: 'method_not_allowed' });
    }
    audit.upstream_status = 200;
    audit.reason = notes.join('; ');
    let finish!: () => void;
    c.set('finished', new Promise<void>((resolve) => (finish = resolve)));
    const body = mergeStreams(streaming, ({ clientClosed, interrupted }) => {
      if (interrupted.length > 0) audit.reason = `${audit.reason}; interrupted: ${interrupted.join('; ')}`;
      // The client going away is how a GET stream usually ends: audited as the proxy does (499, client_closed).
      if (clientClosed) Object.assign(audit, { decision: 'error', rejection: 'client_closed', status: 499 });
      finish();
    });
    return new Response(body, { status: 200, headers: { ...c.get('responseHeaders'), 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...sessionHeaders(sessionId) } });
  };

  /** DELETE: every upstream session ends, then the gateway's. */
  const end = async (c: Context<GatewayEnv>) => {
    const sessionId = c.get('mcp').sessionId;
    if (sessionId === undefined) return refuse(c, { status: 400, code: JSON_RPC_ERRORS.invalidRequest, message: 'DELETE needs an Mcp-Session-Id', rejection: 'no_session' });
    const map = (await sessions.upstreams?.(sessionId)) ?? {};
    const headers = baseHeaders(c);
    await Promise.all(
      upstreams
        .filter((upstream) => map[upstream.name]?.session)
        .map((upstream) => exchange(fetchImpl, upstream, { method: 'DELETE', headers: { ...headers, ...sessionOf(map, upstream.name) }, timeoutMs: config.timeouts.response_ms }).catch(() => undefined)),
    );
    await sessions.end(sessionId);
    return c.body(null, 200, c.get('responseHeaders'));
  };

  return async function multiplexMiddleware(c) {
    try {
      return await handle(c);
    } finally {
      const once = releaseAfter.get(c);
      if (once) {
        // After the answer: a streamed one when its stream has ended.
        const finished = c.get('finished');
        if (finished) void finished.then(() => releaseSessions(c, once));
        else await releaseSessions(c, once);
      }
    }
  };

  async function handle(c: Context<GatewayEnv>): Promise<Response> {
    const mcp = c.get('mcp');
    try {
      if (c.req.method === 'DELETE') return await end(c);
      if (c.req.method === 'GET') return await listen(c);
      const message = mcp.message;
      if (!message || mcp.body === undefined) return refuse(c, { status: 400, code: JSON_RPC_ERRORS.invalidRequest, message: 'batches are not supported on a route with several upstreams', rejection: 'invalid_request' });
      if (message.kind === 'response') return await reply(c, JSON.parse(mcp.body) as { jsonrpc: '2.0'; id?: string | number; result?: unknown; error?: unknown });
      const request = JSON.parse(mcp.body) as JsonRpcRequest;
      if (message.kind === 'notification') return await notify(c, request);
      if (request.method === 'initialize') return await initialize(c, request);
      if (request.method === 'ping') return answer(c, { jsonrpc: '2.0', id: request.id, result: {} }, sessionHeaders(mcp.sessionId));
      if (LISTS[request.method]) return await mergeList(c, request);
      if (DISPATCHED[request.method] || request.method === 'completion/complete') return await dispatch(c, request);
      if (request.method === 'logging/setLevel') return await setLevel(c, request);
      return answer(c, { jsonrpc: '2.0', id: request.id, error: { code: JSON_RPC_ERRORS.methodNotFound, message: `${request.method} is not available on a route with several upstreams` } }, sessionHeaders(mcp.sessionId));
    } catch (error) {
      if (error instanceof SessionStoreUnavailable) {
        return refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'temporarily_unavailable: retry shortly', rejection: 'session_store_unavailable', reason: error.message, decision: 'error', headers: { 'Retry-After': '1' } });
      }
      const failure = error instanceof UpstreamError ? error : upstreamError(error);
      return refuse(c, { status: failure.status, code: GATEWAY_ERRORS.unavailable, message: failure.publicMessage, rejection: failure.rejection, reason: failure.message, decision: 'error' });
    }
  }
}
