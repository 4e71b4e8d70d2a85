/**
 * The `dpop` section of `npm run bench` (`--only=dpop`, issue 17): what DPoP verification adds to
 * one `tools/call` through the gateway's filter chain. In process, no network: the gateway's Hono
 * app (`gatewayApp`) with a route in `dpop.mode: allow`, the AS metadata and keys served by a
 * stub fetch, and a stub forwarder answering at once, so the difference between the two kinds of
 * request is the protection filter's DPoP work: the proof's checks (§4.3: signature, htu, iat…),
 * `ath`, `content_digest`, the thumbprint, and the `jti` replay store (memory; Redis too when
 * REDIS_URL is set). Same token (its validation is cached either way), proofs made before the
 * timed loop (one per request, unique jti). Requests alternate Bearer / DPoP, one at a time.
 */
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { Redis } from 'ioredis';
import { gatewayConfigSchema } from '../src/config/gateway-schema.ts';
import { createDpopProof, generateDpopKey } from '../src/core/dpop.ts';
import { gatewayApp } from '../src/gateway/chain.ts';
import type { Forwarder } from '../src/gateway/filters/proxy.ts';
import { compileRoute } from '../src/gateway/route.ts';
import { MemoryDpopReplay, type DpopReplayStore } from '../src/gateway/dpop.ts';
import { RedisDpopReplay } from '../src/gateway/node/redis-dpop-replay.ts';
import { percentile } from './lib/load.ts';

const ISSUER = 'https://as.bench.test';
const ORIGIN = 'https://gateway.bench.test';
const RESOURCE = `${ORIGIN}/mcp`;
const BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hello' } } });

interface Stats {
  mean: number;
  median: number;
  p99: number;
}
const stats = (micros: number[]): Stats => {
  const sorted = Float64Array.from(micros).sort();
  return { mean: micros.reduce((a, b) => a + b, 0) / micros.length, median: percentile(sorted, 50), p99: percentile(sorted, 99) };
};

async function measure(replay: DpopReplayStore, requests: number): Promise<{ bearer: Stats; dpop: Stats }> {
  const signing = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(signing.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  // The key set is fetched with the global fetch: the AS's (made-up) host is answered here.
  const realFetch = globalThis.fetch;
  const stubFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.startsWith(ISSUER)) return realFetch(input, init);
    if (url.endsWith('/.well-known/oauth-authorization-server')) return Response.json({ issuer: ISSUER, jwks_uri: `${ISSUER}/jwks` });
    if (url.endsWith('/jwks')) return Response.json({ keys: [jwk] });
    return new Response('not found', { status: 404 });
  }) as typeof fetch;
  globalThis.fetch = stubFetch;
  const config = gatewayConfigSchema.parse({
    listen: { host: '127.0.0.1', port: 1 },
    routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/', resource: RESOURCE, authorization_servers: [ISSUER], tools: { echo: {} }, dpop: { mode: 'allow' } }],
  });
  const route = compileRoute(config.routes[0]!, 0, { env: {}, fetch: stubFetch, dpopReplay: replay });
  const answer = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'hello' }] } });
  const forwarder: Forwarder = { forward: async () => new Response(answer, { status: 200, headers: { 'content-type': 'application/json' } }), close: async () => undefined };
  const app = gatewayApp([route], { observer: { ready: () => undefined, record: () => undefined }, forwarder });

  const key = await generateDpopKey('ES256');
  const jkt = await calculateJwkThumbprint(key.publicJwk, 'sha256');
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT({ iss: ISSUER, aud: RESOURCE, sub: 'alice', client_id: 'agent', iat: now, exp: now + 3600, jti: crypto.randomUUID(), ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' }).sign(signing.privateKey);
  const bearerToken = await sign({});
  const boundToken = await sign({ cnf: { jkt } });
  const body = new TextEncoder().encode(BODY);
  const warmup = Math.min(200, requests);
  const proofs: string[] = [];
  for (let i = 0; i < requests + warmup; i++) proofs.push(await createDpopProof(key, { htm: 'POST', htu: RESOURCE, accessToken: boundToken, body }));

  const headers = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
  const send = async (authorization: string, proof?: string): Promise<number> => {
    const request = new Request(RESOURCE, { method: 'POST', headers: { ...headers, authorization, ...(proof ? { dpop: proof } : {}) }, body: BODY });
    const started = performance.now();
    const response = await app.fetch(request);
    const text = await response.text();
    const elapsed = (performance.now() - started) * 1000;
    if (response.status !== 200) throw new Error(`bench dpop: ${response.status} ${text} ${response.headers.get('www-authenticate') ?? ''}`);
    return elapsed;
  };
  const bearer: number[] = [];
  const dpop: number[] = [];
  for (let i = 0; i < warmup; i++) {
    await send(`Bearer ${bearerToken}`);
    await send(`DPoP ${boundToken}`, proofs[i]);
  }
  for (let i = 0; i < requests; i++) {
    bearer.push(await send(`Bearer ${bearerToken}`));
    dpop.push(await send(`DPoP ${boundToken}`, proofs[warmup + i]));
  }
  route.close();
  globalThis.fetch = realFetch;
  return { bearer: stats(bearer), dpop: stats(dpop) };
}

const fmt = (n: number) => n.toFixed(0).padStart(6);

/** Runs the comparison; returns the report section (markdown). */
export async function gatewayDpopSection(requests = 3000): Promise<string> {
  const lines = [
    '## DPoP at the gateway: added cost per request (issue 17)',
    '',
    `In process (\`gatewayApp\`, stub upstream, stub AS), ${requests} tools/call requests of each kind, alternating, one at a time; proofs made before the timed loop. µs per request.`,
    '',
    '| replay store | Bearer mean / median / p99 | DPoP mean / median / p99 | added (mean / median / p99) |',
    '|---|---|---|---|',
  ];
  const row = (name: string, r: { bearer: Stats; dpop: Stats }) =>
    `| ${name} | ${fmt(r.bearer.mean)} / ${fmt(r.bearer.median)} / ${fmt(r.bearer.p99)} | ${fmt(r.dpop.mean)} / ${fmt(r.dpop.median)} / ${fmt(r.dpop.p99)} | ${fmt(r.dpop.mean - r.bearer.mean)} / ${fmt(r.dpop.median - r.bearer.median)} / ${fmt(r.dpop.p99 - r.bearer.p99)} |`;
  lines.push(row('memory', await measure(new MemoryDpopReplay(), requests)));
  if (process.env.REDIS_URL) {
    const redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      lines.push(row('Redis (SET NX EX)', await measure(new RedisDpopReplay(redis, `mandate-bench:${crypto.randomUUID()}`), requests)));
    } finally {
      redis.disconnect();
    }
  }
  return `${lines.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const requests = Number(process.argv.find((a) => a.startsWith('--requests='))?.slice('--requests='.length) ?? 3000);
  console.log(await gatewayDpopSection(requests));
}
