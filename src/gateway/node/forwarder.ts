import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Pool, util, type Dispatcher } from 'undici';
import { REWRITE_BODY_LIMIT, SseEventRewriter, UpstreamError, clientHeadersOf, setUpstreamHeaders, nonceRetryRefused, upstreamError, upstreamHeadersOf, upstreamNonceDemand, type ForwardHooks, type Forwarder, type UpstreamTarget } from '../filters/proxy.ts';
import { isEventStream, type ResponseTap } from '../response-tap.ts';
import type { GatewayAuditEvent, GatewayEnv } from '../types.ts';

interface NodeBindings {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
}

/**
 * The Node forwarder: undici's dispatcher API straight into Node's response — the cheapest
 * proxying Node offers (docs/benchmarks.md: web `fetch` and stream pipelines cost several times
 * more). One keep-alive pool per upstream origin. Chunks are written as they arrive (SSE flows
 * unbuffered), with backpressure both ways, and a client that goes away aborts the upstream request.
 */
export function nodeForwarder(options: { connections?: number; onDispatched?: () => void } = {}): Forwarder {
  const pools = new Map<string, Pool>();
  const poolFor = (origin: string, connectMs: number) => {
    let pool = pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, { connections: options.connections ?? 256, keepAliveTimeout: 30_000, connect: { timeout: connectMs } });
      pools.set(origin, pool);
    }
    return pool;
  };

  return {
    async forward(c, target, hooks) {
      const { incoming, outgoing } = c.env as NodeBindings;
      const audit = c.get('audit');
      const headers = upstreamHeadersOf(incoming.headers, {
        authorization: c.get('upstreamAuthorization'),
        host: incoming.headers.host ?? '',
        proto: (incoming.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
        peer: incoming.socket.remoteAddress,
        requestId: audit.request_id,
      });
      setUpstreamHeaders(headers, hooks.upstreamHeaders);
      // The caller's DPoP proof is a credential for the gateway, like its token: never forwarded.
      // With DPoP mediation the upstream gets the gateway's own proof instead.
      delete headers.dpop;
      const upstreamDpop = c.get('upstreamDpop');
      if (upstreamDpop) headers.dpop = upstreamDpop;
      const body = target.bytes ? Buffer.from(target.bytes) : target.body === undefined ? undefined : Buffer.from(target.body);
      if (body) headers['content-length'] = String(body.byteLength);
      const pool = poolFor(target.origin, hooks.timeouts.connect_ms);
      const forwarded = new Promise<Response>((resolve, reject) => {
        new Forwarding(c, target, hooks, outgoing, pool, headers, body, upstreamDpop, resolve, reject).send();
      });
      // The gateway now waits on the upstream: work put off until then may run (the audit lines).
      options.onDispatched?.();
      return forwarded;
    },
    clientAddress: (c) => (c.env as NodeBindings).incoming.socket.remoteAddress,
    async close() {
      // Called once the server has closed every client connection: what is still in flight
      // upstream (an SSE stream, say) has no one to answer, so it is cut rather than awaited.
      await Promise.all([...pools.values()].map((pool) => pool.destroy()));
      pools.clear();
    },
  };
}

type ResponseHeaders = Record<string, string | string[] | undefined>;

/**
 * One proxied request: the undici dispatch handler itself, its state in fields (one object per
 * request rather than a closure per callback). It speaks undici's callback API (`onConnect`,
 * `onHeaders`, `onData`, `onComplete`, `onError`), which undici calls as it is: a handler of its
 * newer API is wrapped per request in an adapter and a controller that do what these fields do
 * (`abort`, `paused`, `resume`), and the response headers are parsed the same way
 * (`util.parseHeaders`, as that adapter does).
 */
class Forwarding implements Dispatcher.DispatchHandler {
  private readonly audit: GatewayAuditEvent;
  private readonly started = performance.now();
  /** RFC 9449 §9: how to answer an upstream's nonce demand (DPoP mediation only). */
  private readonly retry: ((nonce: string) => Promise<string>) | undefined;
  /** undici's abort of the request in flight (from onConnect), and its resume of a paused response (from onHeaders). */
  private abortUpstream: ((reason?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  /** Whether the upstream's response is held (the session gate, or the client not draining): undici reads no more until resumed. */
  private paused = false;
  private aborted = false;
  private responded = false;
  private tap: ResponseTap | undefined;
  private buffered: Buffer[] | undefined;
  private bufferedSize = 0;
  private rewriter: SseEventRewriter | undefined;
  private contentType: string | undefined;
  private status = 0;
  private upstreamHeadersSeen: ResponseHeaders = {};
  /** A new session id is bound before the client may see it: until then the upstream is paused and its events wait. */
  private gate: Promise<boolean> | undefined;
  /** The nonce of the upstream's 401 use_dpop_nonce to the gateway's proof, whose answer is drained. */
  private demanded: string | undefined;
  private retried = false;
  /** The client's connection closed before undici connected the request: aborted as soon as it does. */
  private clientGone = false;
  private readonly onClientClose = () => {
    if (this.outgoing.writableFinished) return;
    this.clientGone = true;
    this.abort(new Error('the client went away'));
  };
  private onDrain: (() => void) | undefined;

  constructor(
    private readonly c: Context<GatewayEnv>,
    private readonly target: UpstreamTarget & { bytes?: Uint8Array; body?: string },
    private readonly hooks: ForwardHooks,
    private readonly outgoing: ServerResponse,
    private readonly pool: Pool,
    private readonly headers: Record<string, string>,
    private readonly body: Buffer | undefined,
    private readonly upstreamDpop: string | undefined,
    private readonly resolve: (response: Response) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    this.audit = c.get('audit');
    this.retry = upstreamDpop ? c.get('upstreamDpopRetry') : undefined;
    // A response closes once; every way out removes the listener (no `once` wrapper per request).
    outgoing.on('close', this.onClientClose);
  }

  send(): void {
    // The client may have gone while the filters ran (its 'close' came before this listener):
    // nothing is sent upstream then, or a stream would outlive it and hold the pool open.
    if (this.outgoing.destroyed) {
      this.clientClosed();
      return;
    }
    this.abortUpstream = undefined;
    this.resumeUpstream = undefined;
    this.paused = false;
    this.aborted = false;
    this.pool.dispatch(
      {
        origin: this.target.origin,
        path: this.target.path,
        method: this.target.method as Dispatcher.HttpMethod,
        headers: this.headers,
        body: this.body,
        headersTimeout: this.hooks.timeouts.response_ms,
        bodyTimeout: this.hooks.timeouts.idle_ms,
      },
      this,
    );
  }

  /** Aborts the request in flight once (its onError follows); before onConnect, onConnect does it. */
  private abort(reason: Error): void {
    if (this.aborted || !this.abortUpstream) return;
    this.aborted = true;
    this.abortUpstream(reason);
  }

  private pause(): void {
    this.paused = true;
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.resumeUpstream?.();
  }

  private done(): void {
    this.outgoing.off('close', this.onClientClose);
    this.audit.status = this.status;
    if (this.tap) Object.assign(this.audit, this.tap.finish());
    this.resolve(RESPONSE_ALREADY_SENT);
  }

  private fail(error: unknown): void {
    this.outgoing.off('close', this.onClientClose);
    this.reject(error);
  }

  /** The client went away: nothing to answer, and not the upstream's fault (499). */
  private clientClosed(): void {
    this.audit.decision = 'error';
    this.audit.rejection = 'client_closed';
    this.status = 499;
    this.done();
  }

  onConnect(abort: (reason?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.clientGone) this.abort(new Error('the client went away'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.resumeUpstream = resume;
    const responseHeaders = util.parseHeaders(rawHeaders) as ResponseHeaders;
    if (this.retry) this.demanded = upstreamNonceDemand(statusCode, responseHeaders['www-authenticate'], responseHeaders['dpop-nonce']);
    if (this.demanded) {
      this.audit.upstream_status = statusCode;
      return true;
    }
    // If binding the new session fails, the upstream is cut and nothing is sent.
    const session = responseHeaders['mcp-session-id'];
    const binding = typeof session === 'string' ? this.hooks.onSession(session) : undefined;
    if (!binding) {
      this.start(statusCode, responseHeaders);
      return !this.paused;
    }
    this.pause();
    this.gate = binding.then(
      () => true,
      (error: unknown) => {
        this.fail(error);
        this.abort(error as Error);
        return false;
      },
    );
    this.later(() => {
      this.start(statusCode, responseHeaders);
      this.resume();
    });
    return false;
  }

  onData(chunk: Buffer): boolean {
    if (this.demanded) return true;
    if (this.gate) this.later(() => this.data(chunk));
    else this.data(chunk);
    return !this.paused;
  }

  onComplete(): void {
    if (this.demanded) return this.again(this.demanded);
    if (this.gate) this.later(() => this.end());
    else this.end();
  }

  onError(error: Error): void {
    if (this.demanded) return this.fail(upstreamError(error));
    if (this.gate) this.later(() => this.error(error));
    else this.error(error);
  }

  private later(run: () => void): void {
    void this.gate!.then((ok) => ok && run());
  }

  /**
   * RFC 9449 §9: a 401 use_dpop_nonce to the gateway's proof is drained (never sent on) and the
   * request sent once more with a proof carrying the nonce — the body is a buffer, not a
   * stream, so it can go again; a second demand is a 502.
   */
  private again(nonce: string): void {
    if (this.retried) {
      this.outgoing.off('close', this.onClientClose);
      this.c.get('upstreamDpopNonce')?.(nonce);
      this.reject(nonceRetryRefused());
      return;
    }
    this.audit.upstream_dpop_nonce = 'retried';
    this.retry!(nonce).then(
      (proof) => {
        if (this.outgoing.destroyed) {
          // The client went away meanwhile: no retry for nobody.
          this.clientClosed();
          return;
        }
        this.headers.dpop = proof;
        this.retried = true;
        this.demanded = undefined;
        this.send();
      },
      (error: unknown) => this.fail(error),
    );
  }

  private start(statusCode: number, responseHeaders: ResponseHeaders): void {
    const { audit, hooks, outgoing } = this;
    this.status = statusCode;
    this.responded = true;
    audit.upstream_status = statusCode;
    audit.upstream_latency_ms = Math.round((performance.now() - this.started) * 1000) / 1000;
    // RFC 9449 §9: the upstream's next nonce, for the gateway's next proofs to it (DPoP mediation).
    const dpopNonce = responseHeaders['dpop-nonce'];
    if (this.upstreamDpop && typeof dpopNonce === 'string') this.c.get('upstreamDpopNonce')?.(dpopNonce);
    const contentType = responseHeaders['content-type'] as string | undefined;
    this.contentType = contentType;
    this.tap = hooks.tap(contentType);
    if (hooks.rewrite && statusCode < 300 && (hooks.rewrites?.(contentType) ?? true)) {
      this.buffered = [];
      this.upstreamHeadersSeen = responseHeaders;
      return;
    }
    const outHeaders = clientHeadersOf(responseHeaders, hooks.responseHeaders, hooks.dropCookie);
    const eventStream = isEventStream(contentType);
    if (hooks.events && eventStream) {
      this.rewriter = new SseEventRewriter(hooks.events);
      delete outHeaders['content-length'];
    }
    outgoing.writeHead(statusCode, outHeaders);
    // Headers go out at once, so an SSE client sees the stream open before the first event.
    if (eventStream) outgoing.flushHeaders();
  }

  private data(chunk: Buffer): void {
    if (this.buffered) {
      this.bufferedSize += chunk.byteLength;
      if (this.bufferedSize > REWRITE_BODY_LIMIT) this.abort(new UpstreamError(502, 'upstream_unavailable', 'the response to rewrite is too large'));
      else this.buffered.push(chunk);
      return;
    }
    let bytes: Uint8Array = chunk;
    if (this.rewriter) {
      try {
        bytes = this.rewriter.push(chunk);
      } catch (error) {
        this.abort(error as Error);
        return;
      }
      if (bytes.byteLength === 0) return;
    }
    this.tap!.push(bytes);
    if (!this.outgoing.write(bytes)) {
      this.pause();
      this.outgoing.once('drain', (this.onDrain ??= () => this.resume()));
    }
  }

  private end(): void {
    const { outgoing } = this;
    if (!this.buffered) {
      const rest = this.rewriter?.flush();
      if (rest?.byteLength) {
        this.tap!.push(rest);
        outgoing.write(rest);
      }
      outgoing.end();
      this.done();
      return;
    }
    // The rewrite may be async (tool pinning asks the AS); nothing is sent before it is done,
    // so a failure is still the proxy's to answer (502), like an upstream failure.
    let rewritten: string | Promise<string>;
    try {
      rewritten = this.hooks.rewrite!(Buffer.concat(this.buffered).toString('utf8'), this.contentType);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (typeof rewritten === 'string') return this.sendRewritten(rewritten);
    rewritten.then(
      (text) => this.sendRewritten(text),
      (error: unknown) => this.fail(error),
    );
  }

  private sendRewritten(text: string): void {
    const { outgoing, hooks } = this;
    if (outgoing.destroyed) {
      this.clientClosed();
      return;
    }
    const bytes = Buffer.from(text);
    this.tap!.push(bytes);
    outgoing.writeHead(this.status, { ...clientHeadersOf(this.upstreamHeadersSeen, hooks.responseHeaders, hooks.dropCookie), 'content-length': String(bytes.byteLength) });
    outgoing.end(bytes);
    this.done();
  }

  private error(error: Error): void {
    const { outgoing, audit } = this;
    outgoing.off('close', this.onClientClose);
    if (outgoing.destroyed && !outgoing.writableFinished) {
      // The client went away first: nothing to answer, and not the upstream's fault.
      this.clientClosed();
      return;
    }
    if (!this.responded || (this.buffered && !outgoing.headersSent)) {
      this.reject(error instanceof UpstreamError ? error : upstreamError(error));
      return;
    }
    // Mid-stream failure: the status is already sent; cut the stream so the client notices.
    audit.decision = 'error';
    audit.rejection = 'upstream_interrupted';
    audit.reason = error.message;
    outgoing.destroy(error);
    this.done();
  }
}
