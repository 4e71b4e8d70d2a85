import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

/**
 * A loopback HTTP server playing a client's redirect URI (RFC 8252 §7.3, the way native apps and
 * CLIs receive the authorization response). Requests to the callback path are queued; `next()`
 * returns the oldest one not yet taken, or waits for one. Other paths (favicon) get a 404.
 */
export interface CallbackServer {
  /** `http://127.0.0.1:<port>/callback` */
  redirectUri: string;
  origin: string;
  /** Every callback URL received so far, taken or not. */
  readonly received: URL[];
  /** The request headers of each received callback, by URL. */
  readonly headers: Map<string, IncomingHttpHeaders>;
  next(timeoutMs?: number): Promise<URL>;
  /** Waits for the callback request with exactly this URL (received before or later), and takes it. */
  expect(href: string, timeoutMs?: number): Promise<URL>;
  close(): Promise<void>;
}

export async function startCallbackServer(path = '/callback'): Promise<CallbackServer> {
  const queue: URL[] = [];
  const received: URL[] = [];
  const headers = new Map<string, IncomingHttpHeaders>();
  /** Pending waits; a waiter returns true when it took the URL. */
  const waiters: ((url: URL) => boolean)[] = [];
  let origin = '';
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname !== path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    received.push(url);
    headers.set(url.href, req.headers);
    const index = waiters.findIndex((waiter) => waiter(url));
    if (index >= 0) waiters.splice(index, 1);
    else queue.push(url);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Done</title><p>You can close this window.</p>');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  origin = `http://127.0.0.1:${port}`;
  const take = (matches: (url: URL) => boolean, timeoutMs: number, failure: string) => {
    const index = queue.findIndex(matches);
    if (index >= 0) return Promise.resolve(queue.splice(index, 1)[0]!);
    return new Promise<URL>((resolve, reject) => {
      const timer = setTimeout(() => {
        const at = waiters.indexOf(waiter);
        if (at >= 0) waiters.splice(at, 1);
        reject(new Error(`${failure} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (url: URL) => {
        if (!matches(url)) return false;
        clearTimeout(timer);
        resolve(url);
        return true;
      };
      waiters.push(waiter);
    });
  };
  return {
    redirectUri: `${origin}${path}`,
    origin,
    received,
    headers,
    next(timeoutMs = 15_000) {
      return take(() => true, timeoutMs, `no request reached ${origin}${path}`);
    },
    expect(href, timeoutMs = 15_000) {
      return take((url) => url.href === href, timeoutMs, `${href} was not requested`);
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
