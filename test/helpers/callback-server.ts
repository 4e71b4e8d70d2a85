import { createServer, type Server } from 'node:http';

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
  next(timeoutMs?: number): Promise<URL>;
  close(): Promise<void>;
}

export async function startCallbackServer(path = '/callback'): Promise<CallbackServer> {
  const queue: URL[] = [];
  const received: URL[] = [];
  const waiters: ((url: URL) => void)[] = [];
  let origin = '';
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname !== path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    received.push(url);
    const waiter = waiters.shift();
    if (waiter) waiter(url);
    else queue.push(url);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Done</title><p>You can close this window.</p>');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  origin = `http://127.0.0.1:${port}`;
  return {
    redirectUri: `${origin}${path}`,
    origin,
    received,
    next(timeoutMs = 15_000) {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return new Promise<URL>((resolve, reject) => {
        const timer = setTimeout(() => {
          const index = waiters.indexOf(done);
          if (index >= 0) waiters.splice(index, 1);
          reject(new Error(`no request reached ${origin}${path} within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (url: URL) => {
          clearTimeout(timer);
          resolve(url);
        };
        waiters.push(done);
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
