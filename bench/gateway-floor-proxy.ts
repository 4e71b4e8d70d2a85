/**
 * The floor proxy of the gateway bench (`--gateway-floor`): what a gateway fast path could at best
 * become. The gateway's kinds of per-request work, written in one straight-line function with no
 * framework, no promise per step and no loop turn of their own: the body read whole, parsed and
 * serialized again; a request id; the bearer token looked up by its signature in a map, as the
 * gateway's verified-token cache does (the first sight of a token is taken as valid: no signature,
 * audience or expiry check) and its scope checked; a counter per subject; the
 * forwarding headers; the answer parsed for its outcome; two labelled metrics; a JSONL audit line
 * with the arguments' hash, written every 10 ms. It checks much less than the gateway (no CEL, no
 * MCP message or header validation, no refusal paths beyond a missing token), so its cost is a
 * lower bound on a gateway's, not a design. Never a product: a measuring stick (docs/gateway.md
 * "Performance", the eighth round).
 */
import { hash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Counter, Histogram, Registry } from 'prom-client';
import { Pool } from 'undici';
import { announceReady, closeServer, exitOnSignal, listenLoopback } from './lib/child.ts';

const upstream = process.env.BENCH_UPSTREAM_URL;
if (!upstream) throw new Error('BENCH_UPSTREAM_URL is not set');
const upstreamUrl = new URL(upstream);
const pool = new Pool(upstreamUrl.origin, { connections: 256, keepAliveTimeout: 30_000 });

const registry = new Registry();
const labelNames = ['route', 'decision', 'tool'];
const latency = new Histogram({ name: 'floor_request_seconds', help: 'latency', labelNames, registers: [registry] });
const requests = new Counter({ name: 'floor_requests_total', help: 'requests', labelNames, registers: [registry] });

const dir = mkdtempSync(join(tmpdir(), 'mandate-bench-floor-'));
const audit = await open(join(dir, 'audit.jsonl'), 'a');
let lines: string[] = [];
let flushTimer: NodeJS.Timeout | undefined;
let writing: Promise<unknown> = Promise.resolve();
function flush(): Promise<unknown> {
  flushTimer = undefined;
  const text = lines.join('');
  lines = [];
  writing = writing.then(() => audit.write(text)).catch((error: unknown) => console.error(`floor proxy: audit write failed: ${(error as Error).message}`));
  return writing;
}
function record(event: Record<string, unknown>, args: unknown): void {
  const json = JSON.stringify(event);
  lines.push(`${json.slice(0, -1)},"args_sha256":"${hash('sha256', JSON.stringify(args) ?? '')}"}\n`);
  flushTimer ??= setTimeout(flush, 10);
}

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/;
const verified = new Map<string, { token: string; sub: string; scope: string[] }>();
const callsBySubject = new Map<string, number>();
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);

const server = createServer((req, res) => {
  const started = performance.now();
  const requestId = randomUUID();
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const token = BEARER.exec(req.headers.authorization ?? '')?.[1];
    let message: { id?: unknown; method?: string; params?: { name?: string; arguments?: unknown } };
    try {
      message = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof message;
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (!token) {
      res.writeHead(401).end();
      return;
    }
    const key = token.slice(token.lastIndexOf('.') + 1);
    let claims = verified.get(key);
    if (claims?.token !== token) verified.set(key, (claims = { token, sub: 'bench-user', scope: ['bench:call'] }));
    if (!claims.scope.includes('bench:call')) {
      res.writeHead(403).end();
      return;
    }
    callsBySubject.set(claims.sub, (callsBySubject.get(claims.sub) ?? 0) + 1);
    const tool = message.params?.name ?? '';
    const event: Record<string, unknown> = { time: new Date().toISOString(), request_id: requestId, route: '/mcp', http_method: 'POST', sub: claims.sub, kind: 'request', method: message.method, jsonrpc_id: message.id, tool, decision: 'allow', status: 0, latency_ms: 0 };
    const answer: Buffer[] = [];
    pool.stream(
      {
        path: upstreamUrl.pathname,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: req.headers.accept ?? 'application/json',
          ...(typeof req.headers['mcp-protocol-version'] === 'string' ? { 'mcp-protocol-version': req.headers['mcp-protocol-version'] } : {}),
          'x-forwarded-for': req.socket.remoteAddress ?? '',
          'x-forwarded-host': req.headers.host ?? '',
          'x-forwarded-proto': 'http',
          'x-request-id': requestId,
        },
        body: JSON.stringify(message),
      },
      ({ statusCode, headers }) => {
        const out: Record<string, string | string[]> = { 'x-request-id': requestId };
        for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name]!;
        res.writeHead(statusCode, out);
        event.upstream_status = statusCode;
        return new Writable({
          write(chunk: Buffer, _encoding, done) {
            answer.push(chunk);
            res.write(chunk, done);
          },
          final(done) {
            res.end();
            done();
          },
        });
      },
      (error) => {
        if (error) {
          if (!res.headersSent) res.writeHead(502).end();
          else res.destroy(error);
          return;
        }
        try {
          event.outcome = (JSON.parse(Buffer.concat(answer).toString('utf8')) as { error?: unknown }).error ? 'error' : 'result';
        } catch {
          event.outcome = 'unparsed';
        }
        event.status = res.statusCode;
        event.latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
        latency.labels('/mcp', 'allow', tool).observe((event.latency_ms as number) / 1000);
        requests.labels('/mcp', 'allow', tool).inc();
        record(event, message.params?.arguments);
      },
    );
  });
});
const url = await listenLoopback(server);
exitOnSignal(async () => {
  await closeServer(server);
  await pool.close();
  clearTimeout(flushTimer);
  await flush();
  await audit.close();
  rmSync(dir, { recursive: true, force: true });
});
announceReady({ name: 'floor proxy (the gateway\'s kinds of work in one function)', url, tokenEndpoint: `${url}/mcp` });
