import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Context, type MiddlewareHandler } from 'hono';
import type { GatewayHandlers } from '../chain.ts';
import type { GatewayEnv } from '../types.ts';

type FetchCallback = (request: Request, bindings: unknown) => Response | Promise<Response>;

/** What the listener serves now (the routes change on reload). */
export interface ListenerTarget {
  /** Every request the fast path does not take, through @hono/node-server's adapter. */
  fetch: FetchCallback;
  handlers: GatewayHandlers;
  /** Paths served by web routes (kind: web): the adapter's. */
  isWeb?: (path: string) => boolean;
}

// @hono/node-server's own checks (src/url.ts): a request target and a Host it takes as they are,
// without URL parsing; the target here also without `%` escapes (Hono decodes them to route) and
// `#`. Anything else (dot segments, escapes, an odd Host) goes through the adapter, which
// normalizes or refuses it as before.
const PLAIN_TARGET = /^\/[!$&-;=?-[\]_a-z~]*$/;
const DOT_SEGMENT = /\/\.\.?(?:[/?#]|$)/;
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;
const METHODS = new Set(['GET', 'POST', 'DELETE', 'OPTIONS', 'PUT', 'PATCH']);

const RESPONSE = Symbol('mandate.response');
type Answered = IncomingMessage & { [RESPONSE]?: Response };

/**
 * The web request a route's filters see on the fast path: method and URL at once, the rest
 * (headers, body, signal) made only if something asks for them. On Node the filters read the
 * `IncomingMessage` itself (src/gateway/headers.ts, the validation filter's body read).
 */
class NodeRequest {
  #headers: Headers | undefined;
  #body: ReadableStream<Uint8Array> | undefined;
  #abort: AbortController | undefined;

  constructor(
    readonly method: string,
    readonly url: string,
    private readonly incoming: IncomingMessage,
  ) {}

  get headers(): Headers {
    if (!this.#headers) {
      const headers = new Headers();
      const raw = this.incoming.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.charCodeAt(0) !== 58) headers.append(raw[i]!, raw[i + 1]!);
      this.#headers = headers;
    }
    return this.#headers;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.method === 'GET' || this.method === 'HEAD') return null;
    this.#body ??= Readable.toWeb(this.incoming) as ReadableStream<Uint8Array>;
    return this.#body;
  }

  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    return this.#abort.signal;
  }
}

/**
 * The gateway's Node request listener. A request for an MCP route (one upstream) runs the route's
 * chain straight on a Hono `Context`, without @hono/node-server's per-request work (a web Request
 * wrapper, a close listener, the router, reading back the headers of a response the forwarder
 * already wrote). A web `Response` from the chain (a refusal, a JSON answer) is written by the
 * adapter's own writer, as before; every other request (metadata, web routes, routes with several
 * upstreams, unusual targets) goes through the adapter whole.
 */
export function gatewayListener(current: () => ListenerTarget): (incoming: IncomingMessage, outgoing: ServerResponse) => void {
  const adapter = getRequestListener((request, bindings) => current().fetch(request, bindings));
  // The same adapter, handed the Response the chain gave (status, headers with every Set-Cookie,
  // body or stream, and its clean-up of an unread request body).
  const writer = getRequestListener((_request, bindings) => (bindings.incoming as Answered)[RESPONSE]!);
  const write = (incoming: IncomingMessage, outgoing: ServerResponse, response: Response) => {
    (incoming as Answered)[RESPONSE] = response;
    void writer(incoming, outgoing);
  };

  return function gatewayRequest(incoming, outgoing) {
    const target = current();
    const url = incoming.url ?? '';
    const host = incoming.headers.host;
    const method = incoming.method ?? '';
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    const handler = host !== undefined && METHODS.has(method) && PLAIN_HOST.test(host) && PLAIN_TARGET.test(url) && !DOT_SEGMENT.test(url) ? routeFor(target, path) : undefined;
    if (!handler) {
      void adapter(incoming, outgoing);
      return;
    }
    const scheme = (incoming.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    const request = new NodeRequest(method, `${scheme}://${host}${url}`, incoming) as unknown as Request;
    const { notFound, onError } = target.handlers;
    const c = new Context<GatewayEnv>(request, { env: { incoming, outgoing }, path, notFoundHandler: notFound });
    const answer = (response: Response | undefined) => {
      if (response === RESPONSE_ALREADY_SENT) return;
      const res = response ?? (notFound(c) as Response);
      // A copy of the forwarder's marker (a filter read c.res before the proxy answered) is as good.
      if (res.body === null && res.headers.has('x-hono-already-sent')) return;
      write(incoming, outgoing, res);
    };
    const failed = (error: unknown) => {
      if (!(error instanceof Error)) {
        write(incoming, outgoing, new Response(null, { status: 500 }));
        return;
      }
      Promise.resolve(onError(error, c)).then(answer, () => write(incoming, outgoing, new Response(null, { status: 500 })));
    };
    let result: ReturnType<MiddlewareHandler<GatewayEnv>>;
    try {
      result = handler(c, async () => {
        c.res = await notFound(c);
      });
    } catch (error) {
      failed(error);
      return;
    }
    Promise.resolve(result).then((response) => answer(response ?? (c.finalized ? c.res : undefined)), failed);
  };
}

/** The chain of the first route whose prefix the path falls under, if the fast path may take it. */
function routeFor(target: ListenerTarget, path: string): MiddlewareHandler<GatewayEnv> | undefined {
  const { routes, metadataPaths } = target.handlers;
  if (metadataPaths.has(path) || target.isWeb?.(path)) return undefined;
  for (const route of routes) {
    const { prefix } = route;
    if (path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47)) return route.multiplexed ? undefined : route.handler;
  }
  return undefined;
}
