import type { IncomingMessage, ServerResponse } from 'node:http';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Pool, type Dispatcher } from 'undici';
import { REWRITE_BODY_LIMIT, SseEventRewriter, UpstreamError, clientHeadersOf, setUpstreamHeaders, nonceRetryRefused, upstreamError, upstreamHeadersOf, upstreamNonceDemand, type Forwarder } from '../filters/proxy.ts';

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
export function nodeForwarder(options: { connections?: number } = {}): Forwarder {
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
      const started = performance.now();

      return new Promise<Response>((resolve, reject) => {
        let controller: Dispatcher.DispatchController | undefined;
        let responded = false;
        let tap: ReturnType<typeof hooks.tap> | undefined;
        let buffered: Buffer[] | undefined;
        let bufferedSize = 0;
        let rewriter: SseEventRewriter | undefined;
        let contentType: string | undefined;
        let status = 0;
        let upstreamHeadersSeen: Record<string, string | string[] | undefined> = {};
        const onClientClose = () => {
          if (!outgoing.writableFinished) controller?.abort(new Error('the client went away'));
        };
        outgoing.once('close', onClientClose);
        const done = () => {
          outgoing.off('close', onClientClose);
          audit.status = status;
          Object.assign(audit, tap?.finish() ?? {});
          resolve(RESPONSE_ALREADY_SENT);
        };
        /** The client went away: nothing to answer, and not the upstream's fault (499). */
        const clientClosed = () => {
          audit.decision = 'error';
          audit.rejection = 'client_closed';
          status = 499;
          done();
        };

        const upstreamHandler = {
          onRequestStart(ctrl: Dispatcher.DispatchController) {
            controller = ctrl;
          },
          onResponseStart(_ctrl: Dispatcher.DispatchController, statusCode: number, responseHeaders: Record<string, string | string[] | undefined>) {
            status = statusCode;
            responded = true;
            audit.upstream_status = statusCode;
            audit.upstream_latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
            // RFC 9449 §9: the upstream's next nonce, for the gateway's next proofs to it (DPoP mediation).
            const dpopNonce = responseHeaders['dpop-nonce'];
            if (upstreamDpop && typeof dpopNonce === 'string') c.get('upstreamDpopNonce')?.(dpopNonce);
            contentType = responseHeaders['content-type'] as string | undefined;
            tap = hooks.tap(contentType);
            if (hooks.rewrite && statusCode < 300) {
              buffered = [];
              upstreamHeadersSeen = responseHeaders;
              return;
            }
            const outHeaders = clientHeadersOf(responseHeaders, hooks.responseHeaders, hooks.dropCookie);
            if (hooks.events && contentType?.startsWith('text/event-stream')) {
              rewriter = new SseEventRewriter(hooks.events);
              delete outHeaders['content-length'];
            }
            outgoing.writeHead(statusCode, outHeaders);
            // Headers go out at once, so an SSE client sees the stream open before the first event.
            if (contentType?.startsWith('text/event-stream')) outgoing.flushHeaders();
          },
          onResponseData(ctrl: Dispatcher.DispatchController, chunk: Buffer) {
            if (buffered) {
              bufferedSize += chunk.byteLength;
              if (bufferedSize > REWRITE_BODY_LIMIT) ctrl.abort(new UpstreamError(502, 'upstream_unavailable', 'the response to rewrite is too large'));
              else buffered.push(chunk);
              return;
            }
            let bytes: Uint8Array = chunk;
            if (rewriter) {
              try {
                bytes = rewriter.push(chunk);
              } catch (error) {
                ctrl.abort(error as Error);
                return;
              }
              if (bytes.byteLength === 0) return;
            }
            tap!.push(bytes);
            if (!outgoing.write(bytes)) {
              ctrl.pause();
              outgoing.once('drain', () => ctrl.resume());
            }
          },
          onResponseEnd() {
            if (!buffered) {
              const rest = rewriter?.flush();
              if (rest?.byteLength) {
                tap!.push(rest);
                outgoing.write(rest);
              }
              outgoing.end();
              done();
              return;
            }
            // The rewrite may be async (tool pinning asks the AS); nothing is sent before it is done,
            // so a failure is still the proxy's to answer (502), like an upstream failure.
            let rewritten: string | Promise<string>;
            try {
              rewritten = hooks.rewrite!(Buffer.concat(buffered).toString('utf8'), contentType);
            } catch (error) {
              outgoing.off('close', onClientClose);
              reject(error);
              return;
            }
            const send = (text: string) => {
              if (outgoing.destroyed) {
                clientClosed();
                return;
              }
              const bytes = Buffer.from(text);
              tap!.push(bytes);
              outgoing.writeHead(status, { ...clientHeadersOf(upstreamHeadersSeen, hooks.responseHeaders, hooks.dropCookie), 'content-length': String(bytes.byteLength) });
              outgoing.end(bytes);
              done();
            };
            if (typeof rewritten === 'string') return send(rewritten);
            rewritten.then(send, (error: unknown) => {
              outgoing.off('close', onClientClose);
              reject(error);
            });
          },
          onResponseError(_ctrl: Dispatcher.DispatchController, error: Error) {
            outgoing.off('close', onClientClose);
            if (outgoing.destroyed && !outgoing.writableFinished) {
              // The client went away first: nothing to answer, and not the upstream's fault.
              clientClosed();
              return;
            }
            if (!responded || (buffered && !outgoing.headersSent)) {
              reject(error instanceof UpstreamError ? error : upstreamError(error));
              return;
            }
            // Mid-stream failure: the status is already sent; cut the stream so the client notices.
            audit.decision = 'error';
            audit.rejection = 'upstream_interrupted';
            audit.reason = error.message;
            outgoing.destroy(error);
            done();
          },
        };
        // A new session id is bound before the client may see it: until then the upstream is
        // paused and its events wait; if binding fails, the upstream is cut and nothing is sent.
        let gate: Promise<boolean> | undefined;
        const later = (run: () => void) => (gate ? void gate.then((ok) => ok && run()) : run());
        const retry = upstreamDpop ? c.get('upstreamDpopRetry') : undefined;
        /**
         * RFC 9449 §9: a 401 use_dpop_nonce to the gateway's proof is drained (never sent on) and the
         * request sent once more with a proof carrying the nonce — the body is a buffer, not a
         * stream, so it can go again; a second demand is a 502.
         */
        const handlerFor = (retried: boolean): Dispatcher.DispatchHandler => {
          let demanded: string | undefined;
          const again = (nonce: string) => {
            if (retried) {
              outgoing.off('close', onClientClose);
              c.get('upstreamDpopNonce')?.(nonce);
              reject(nonceRetryRefused());
              return;
            }
            audit.upstream_dpop_nonce = 'retried';
            retry!(nonce).then(
              (proof) => {
                if (outgoing.destroyed) {
                  // The client went away meanwhile: no retry for nobody.
                  clientClosed();
                  return;
                }
                headers.dpop = proof;
                send(true);
              },
              (error: unknown) => {
                outgoing.off('close', onClientClose);
                reject(error);
              },
            );
          };
          return {
            onRequestStart: (ctrl) => upstreamHandler.onRequestStart(ctrl),
            onResponseStart(ctrl, statusCode, responseHeaders) {
              if (retry) demanded = upstreamNonceDemand(statusCode, responseHeaders['www-authenticate'], responseHeaders['dpop-nonce']);
              if (demanded) {
                audit.upstream_status = statusCode;
                return;
              }
              handler.onResponseStart!(ctrl, statusCode, responseHeaders);
            },
            onResponseData: (ctrl, chunk) => (demanded ? undefined : handler.onResponseData!(ctrl, chunk)),
            onResponseEnd: (ctrl, trailers) => (demanded ? again(demanded) : handler.onResponseEnd!(ctrl, trailers)),
            onResponseError: (ctrl, error) => {
              if (!demanded) return handler.onResponseError!(ctrl, error);
              outgoing.off('close', onClientClose);
              reject(upstreamError(error));
            },
          };
        };
        const handler: Dispatcher.DispatchHandler = {
          onRequestStart: (ctrl) => upstreamHandler.onRequestStart(ctrl),
          onResponseStart(ctrl, statusCode, responseHeaders) {
            const session = responseHeaders['mcp-session-id'];
            const binding = typeof session === 'string' ? hooks.onSession(session) : undefined;
            if (!binding) return upstreamHandler.onResponseStart(ctrl, statusCode, responseHeaders);
            ctrl.pause();
            gate = binding.then(
              () => true,
              (error: unknown) => {
                outgoing.off('close', onClientClose);
                reject(error);
                ctrl.abort(error as Error);
                return false;
              },
            );
            later(() => {
              upstreamHandler.onResponseStart(ctrl, statusCode, responseHeaders);
              ctrl.resume();
            });
          },
          onResponseData: (ctrl, chunk) => later(() => upstreamHandler.onResponseData(ctrl, chunk)),
          onResponseEnd: () => later(() => upstreamHandler.onResponseEnd()),
          onResponseError: (ctrl, error) => later(() => upstreamHandler.onResponseError(ctrl, error)),
        };
        const send = (retried: boolean) =>
          poolFor(target.origin, hooks.timeouts.connect_ms).dispatch(
            {
              origin: target.origin,
              path: target.path,
              method: target.method as Dispatcher.HttpMethod,
              headers,
              body,
              headersTimeout: hooks.timeouts.response_ms,
              bodyTimeout: hooks.timeouts.idle_ms,
            },
            retry ? handlerFor(retried) : handler,
          );
        send(false);
      });
    },
    clientAddress: (c) => (c.env as NodeBindings).incoming.socket.remoteAddress,
    async close() {
      await Promise.all([...pools.values()].map((pool) => pool.close()));
      pools.clear();
    },
  };
}
