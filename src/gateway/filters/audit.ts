import type { Context, MiddlewareHandler, Next } from 'hono';
import type { GatewayAuditEvent, GatewayEnv } from '../types.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';

/** Where audit events go: the sink applies backpressure instead of dropping (docs/gateway.md). */
export interface GatewayObserver {
  /** Undefined when there is room for another event; else resolves to whether room came in time. */
  ready(): Promise<boolean> | undefined;
  record(event: GatewayAuditEvent): void;
}

/** `new Date(ms).toISOString()`, made once per millisecond: under load many requests share one. */
let isoMs = -1;
let iso = '';
function isoTime(ms: number): string {
  if (ms !== isoMs) {
    isoMs = ms;
    iso = new Date(ms).toISOString();
  }
  return iso;
}

/**
 * The audit filter. It is first in the chain, although DESIGN lists audit after throttling, because
 * one event per MCP message must also record the requests that validation, protection, tool
 * authorization and throttling refuse; it stamps the request (request_id, also sent upstream and
 * back as X-Request-Id), lets the chain run, and writes the event once the response has been
 * sent in full — so a streamed call is audited with its JSON-RPC outcome and full latency.
 */
export function auditRequests(route: { config: { path: string } }, observer: GatewayObserver): MiddlewareHandler<GatewayEnv> {
  // Not an async function: with room in the sink (the common case) the request goes on at once,
  // and what follows the chain is one `then`, not an async frame (docs/gateway.md "Performance").
  const run = (c: Context<GatewayEnv>, next: Next, room: boolean): Promise<Response | void> => {
    const started = performance.now();
    // The request's arrival; written as text when the event is complete, after the answer (off
    // the request's path: at one connection each request is in a new millisecond).
    const arrived = Date.now();
    const event: GatewayAuditEvent = {
      time: '',
      request_id: crypto.randomUUID(),
      route: route.config.path,
      http_method: c.req.method,
      decision: 'allow',
      status: 0,
      latency_ms: 0,
    };
    c.set('audit', event);
    c.set('finished', undefined);
    c.set('rewriteResult', undefined);
    c.set('responseHeaders', { 'x-request-id': event.request_id });
    const complete = () => {
      event.time = isoTime(arrived);
      const mcp = c.get('mcp');
      if (mcp) {
        event.protocol_version = mcp.protocolVersion;
        if (mcp.sessionId) event.session = mcp.sessionId;
        const message = mcp.message;
        if (message) {
          event.kind = message.kind;
          if (message.method) event.method = message.method;
          if (message.id !== undefined) event.jsonrpc_id = message.id;
          if (message.toolName) {
            event.tool = message.toolName;
            event.arguments = message.arguments;
          }
        }
      }
      if (!event.status) event.status = c.res.status;
      event.latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
      observer.record(event);
    };
    if (!room) {
      // The sink is not keeping up: refuse rather than forward a call whose event may be lost.
      const response = refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'the gateway is overloaded, retry later', rejection: 'audit_unavailable', reason: 'the audit sink had no room in time', decision: 'error', headers: { 'Retry-After': '1' } });
      event.status = 503;
      complete();
      return Promise.resolve(response);
    }
    return next().then(
      () => {
        const finished = c.get('finished');
        if (finished) void finished.then(complete);
        else complete();
      },
      (error: unknown) => {
        event.decision = 'error';
        event.rejection = 'internal_error';
        event.reason = (error as Error).message;
        event.status = 500;
        complete();
        throw error;
      },
    );
  };
  return function auditMiddleware(c, next) {
    const wait = observer.ready();
    return wait ? wait.then((room) => run(c, next, room)) : run(c, next, true);
  };
}
