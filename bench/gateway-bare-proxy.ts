/**
 * The gateway benchmark's baseline: a bare reverse proxy on `undici` `Pool.stream()`, which writes
 * the upstream's response straight into Node's `ServerResponse` — the cheapest Node proxy
 * (/work/shared/BENCHMARKS.md). No checks of any kind: the request (headers minus hop-by-hop, body
 * streamed) goes to BENCH_UPSTREAM_URL's origin on the same path, the answer comes back as is.
 * Alone in a process; prints one ready line on stdout.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { announceReady, closeServer, exitOnSignal, listenLoopback } from './lib/child.ts';

const upstream = process.env.BENCH_UPSTREAM_URL;
if (!upstream) throw new Error('BENCH_UPSTREAM_URL is not set');

/** RFC 9110 §7.6.1, plus what undici sets itself. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function withoutHopByHop(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

// As many upstream connections as the gateway's forwarder allows (src/gateway/node/forwarder.ts).
const pool = new Pool(new URL(upstream).origin, { connections: 256, keepAliveTimeout: 30_000 });

const factory: Dispatcher.StreamFactory<ServerResponse> = ({ statusCode, headers, opaque }) => {
  opaque.writeHead(statusCode, withoutHopByHop(headers));
  return opaque;
};

const server = createServer((req, res) => {
  pool.stream(
    { path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers: withoutHopByHop(req.headers), body: req, opaque: res },
    factory,
    (error) => {
      if (!error) return;
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy(error);
    },
  );
});
const url = await listenLoopback(server);
exitOnSignal(async () => {
  await closeServer(server);
  await pool.close();
});
announceReady({ name: 'bare undici Pool.stream proxy', url, tokenEndpoint: `${url}/mcp` });
