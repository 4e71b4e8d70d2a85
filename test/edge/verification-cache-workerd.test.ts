/**
 * The verification caches shared by the Worker's isolates (issue 16), in workerd: the verified-token
 * cache in KV (`VERIFIED_TOKENS`) and the AS's key set in the Cache API (`caches.default`). The
 * bundle runs under Miniflare (Node 22 from .cache/edge) as several isolates (`--instances`), each on
 * its own loopback port, sharing one KV namespace and one cache as isolates of one Worker do.
 *
 * What an isolate took from a cache is told apart from what it verified itself by the issuer: its
 * JWKS fetches are counted, and it can be made unreachable (then only a cache can let a token in).
 * Loopback only, bounded in time; workerd is stopped at the end of each block.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import { EdgeCacheMac, parseEdgeCacheKey } from '../../src/gateway/workers/edge-cache-key.ts';
import { kvVerifiedTokens } from '../../src/gateway/workers/verified-tokens.ts';
import { freePort } from '../helpers/auth-server.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const EDGE = resolve('.cache/edge/node_modules');
const NODE22 = join(EDGE, 'node/bin/node');
const available = existsSync(NODE22) && existsSync(join(EDGE, 'miniflare/package.json'));
const STARTUP_MS = 30_000;
const skip = skipUnless(available, 'edge tests: run `npm run edge:install` (Miniflare and workerd need Node 22, installed under .cache/)');

type Issuer = Awaited<ReturnType<typeof startFakeIssuer>>;
type Upstream = Awaited<ReturnType<typeof startScriptedUpstream>>;

/** The Worker in workerd, `instances` isolates: their `/mcp` URLs, its output, and a stop. */
interface Workerd {
  /** `/mcp` of each isolate; tokens are for the first one's (the route's `resource`). */
  mcp: string[];
  resource: string;
  output(): string;
  stop(): Promise<void>;
}

let script: string | undefined;
/** The Worker's MANDATE_EDGE_CACHE_KEY (handed over through the environment, never a command line). */
const CACHE_KEY = Buffer.alloc(32, 5).toString('base64url');
const ALGORITHMS = ['ES256', 'RS256', 'PS256', 'EdDSA'];

/** A KV entry as the Worker writes it (the route's defaults: typ at+jwt, the default algorithms). */
async function entryFor(issuer: string, resource: string, token: string, claims: Record<string, unknown>) {
  const entries = new Map<string, string>();
  const kv = kvVerifiedTokens({ get: async () => null, put: async (key, value) => void entries.set(key, value) }, { maxTtlSeconds: 300, mac: new EdgeCacheMac(parseEdgeCacheKey(CACHE_KEY)!) });
  const key = await kv.key({ issuer, audience: resource, typ: 'at+jwt', algorithms: ALGORITHMS, token });
  await kv.put(key, claims, 300);
  return { key, value: entries.get(key)! };
}
const dirs: string[] = [];

function bundle(): string {
  if (script) return script;
  const dir = mkdtempSync(join(tmpdir(), 'mandate-edge-cache-'));
  dirs.push(dir);
  const out = join(dir, 'gateway.js');
  const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--outfile', out], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(built.status, 0, built.stderr);
  script = out;
  return out;
}

/** The route: tokens from `issuer`, calls to `upstream`; a kid unknown to an isolate is fetched at once. */
async function startWorkerd(issuer: Issuer, upstream: Upstream, args: string[], options: { port?: number; seed?: unknown[] } = {}): Promise<Workerd> {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-edge-cache-run-'));
  dirs.push(dir);
  const port = options.port ?? (await freePort());
  const resource = `http://127.0.0.1:${port}/mcp`;
  const configFile = join(dir, 'gateway.json');
  const route = { path: '/mcp', upstream: upstream.url, resource, authorization_servers: [issuer.issuer], scopes: ['banking:read'], tools: listedTools(), token: { jwks_min_refresh_seconds: 0 } };
  writeFileSync(configFile, JSON.stringify({ routes: [route] }));
  const seed = options.seed ? ['--kv-seed', join(dir, 'seed.json')] : [];
  if (options.seed) writeFileSync(join(dir, 'seed.json'), JSON.stringify(options.seed));
  const child: ChildProcess = spawn(NODE22, ['scripts/edge-workerd.mjs', '--config', configFile, '--script', bundle(), '--host', '127.0.0.1', '--port', String(port), '--env-binding', 'MANDATE_EDGE_CACHE_KEY', ...seed, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, MANDATE_EDGE_CACHE_KEY: CACHE_KEY } });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const urls = await new Promise<string[]>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`workerd did not start in ${STARTUP_MS} ms:\n${stdout}\n${stderr}`)), STARTUP_MS);
    child.stdout!.on('data', () => {
      const line = stdout.split('\n').find((l) => l.startsWith('{"url":'));
      if (line && stdout.slice(stdout.indexOf(line) + line.length).includes('\n')) {
        clearTimeout(timer);
        const parsed = JSON.parse(line) as { url: string; urls?: string[] };
        ready(parsed.urls ?? [parsed.url]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`workerd exited (${code}):\n${stdout}\n${stderr}`));
    });
  });
  assert.equal(urls[0], `http://127.0.0.1:${port}`);
  return {
    mcp: urls.map((url) => `${url}/mcp`),
    resource,
    output: () => stdout + stderr,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      // The runner disposes of workerd on SIGTERM (and when its stdin closes, should this process die).
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The audit lines the Worker printed (console.log → workerd's stdout). */
function auditLines(workerd: Workerd): Record<string, unknown>[] {
  return workerd
    .output()
    .split('\n')
    .filter((line) => line.includes('"audit":"mandate-gateway"'))
    .map((line) => JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>);
}

async function auditFor(workerd: Workerd, requestId: string | null): Promise<Record<string, unknown>> {
  assert.ok(requestId, 'the response names its request');
  // Written when the response is complete: may land just after the client has read it.
  for (let i = 0; i < 50; i++) {
    const event = auditLines(workerd).find((e) => e.request_id === requestId);
    if (event) return event;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no audit line for ${requestId} in the Worker's output:\n${workerd.output()}`);
}

/** Calls `url` until it answers `status` (at most `tries` times, 100 ms apart); the last answer. */
async function callUntil(url: string, headers: Record<string, string>, status: number, tries = 50) {
  let res = await mcpPost(url, toolCall('echo', {}, 1), headers);
  for (let i = 1; i < tries && res.status !== status; i++) {
    await new Promise((r) => setTimeout(r, 100));
    res = await mcpPost(url, toolCall('echo', {}, 1), headers);
  }
  return res;
}

after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('verified tokens in KV, shared by the isolates (the Cache API off)', skip, () => {
  let issuer: Issuer;
  let upstream: Upstream;
  let workerd: Workerd;
  let expiredEntryToken: string;
  let seededToken: string;
  let plantedToken: string;
  let forgedToken: string;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    const port = await freePort();
    const resource = `http://127.0.0.1:${port}/mcp`;
    // Entries the Worker did not write: one whose claims have expired (KV's expiry is approximate,
    // so an entry may be read after its token's exp), and one current, saying sub "from-kv".
    const now = Math.floor(Date.now() / 1000);
    expiredEntryToken = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' });
    seededToken = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' });
    const claims = { iss: issuer.issuer, aud: resource, client_id: 'agent-1', scope: 'banking:read', iat: now - 400, jti: 'seeded' };
    plantedToken = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' });
    // Security review: a KV editor without the Worker's secret. A token of their own making (unknown
    // kid, typ JWT, junk signature) under the old key, SHA-256(version, issuer, audience, token)…
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    forgedToken = `${b64({ alg: 'ES256', kid: 'attacker', typ: 'JWT' })}.${b64({ sub: 'admin' })}.AAAA`;
    const oldKey = createHash('sha256').update(JSON.stringify(['mandate-verified-token/1', issuer.issuer, resource, forgedToken])).digest('base64url');
    // …and, under a real token's genuine key (seen in a listing of the namespace), claims without a valid MAC.
    const genuine = await entryFor(issuer.issuer, resource, plantedToken, { ...claims, sub: 'genuine', exp: now + 300 });
    const seed = [
      await entryFor(issuer.issuer, resource, expiredEntryToken, { ...claims, sub: 'stale-in-kv', exp: now - 1 }),
      await entryFor(issuer.issuer, resource, seededToken, { ...claims, sub: 'from-kv', exp: now + 300 }),
      { key: oldKey, value: { ...claims, sub: 'admin', scope: 'banking:read banking:write', exp: now + 3600 } },
      { key: genuine.key, value: JSON.stringify({ claims: JSON.stringify({ ...claims, sub: 'planted', exp: now + 300 }), mac: (JSON.parse(genuine.value) as { mac: string }).mac }) },
    ];
    workerd = await startWorkerd(issuer, upstream, ['--instances', '4', '--cache', 'off'], { port, seed });
  });
  after(async () => {
    await workerd?.stop();
    await upstream?.close();
    await issuer?.close();
  });

  const bearer = async (claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: workerd.resource, client_id: 'agent-1', scope: 'banking:read', ...claims })}` });

  it('a token verified by one isolate is taken from KV by another, which never fetches the keys: it accepts it with the issuer down', async () => {
    const [a, b] = workerd.mcp as [string, string];
    const headers = await bearer({ sub: 'kv-shared' });
    const first = await mcpPost(a, toolCall('echo', {}, 1), headers);
    assert.equal(first.status, 200, first.text);
    assert.equal(issuer.jwksHits, 1);
    // Now only KV can vouch for the token at the second isolate: it has no keys and cannot fetch any.
    issuer.setUp(false);
    // The first isolate's write finishes after its response (ctx.waitUntil): until it lands, 503.
    const shared = await callUntil(b, headers, 200);
    assert.equal(shared.status, 200, shared.text);
    const event = await auditFor(workerd, shared.headers.get('x-request-id'));
    assert.equal(event.decision, 'allow');
    assert.equal(event.sub, 'kv-shared');
    issuer.setUp(true);
    // The second isolate still has no keys of its own: a new token makes it fetch them (the first
    // fetch after the issuer is back may wait for the retry interval after its failed attempts).
    const fresh = await callUntil(b, await bearer({ sub: 'fresh' }), 200);
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(issuer.jwksHits, 2, 'the JWKS fetched once per isolate that verified a signature, none for the KV hit');
  });

  it('a token with less than 60 s to live is not put in KV (KV keeps nothing for less)', async () => {
    const [a, , c] = workerd.mcp as [string, string, string];
    const short = await bearer({ sub: 'short-lived', exp: Math.floor(Date.now() / 1000) + 45 });
    assert.equal((await mcpPost(a, toolCall('echo', {}, 1), short)).status, 200);
    // A long-lived token verified after it, seen through the third isolate: KV has the writes by then.
    const long = await bearer({ sub: 'long-lived' });
    assert.equal((await mcpPost(a, toolCall('echo', {}, 1), long)).status, 200);
    issuer.setUp(false);
    try {
      assert.equal((await callUntil(c, long, 200)).status, 200, 'the long-lived token came through KV');
      const refused = await mcpPost(c, toolCall('echo', {}, 2), short);
      assert.equal(refused.status, 503, refused.text);
      const event = await auditFor(workerd, refused.headers.get('x-request-id'));
      assert.equal(event.rejection, 'validation_unavailable');
      assert.match(String(event.reason), /^signing key k1 is not among the cached keys, and the JWKS cannot be fetched/);
    } finally {
      issuer.setUp(true);
    }
  });

  it('KV is read only where verifying would first fetch the keys; an entry read back after its claims expired is not taken', async () => {
    const [a, , c] = workerd.mcp as [string, string, string];
    // The third isolate holds no key (its only fetch failed above): the seeded entry is read.
    const seeded = await callUntil(c, { authorization: `Bearer ${seededToken}` }, 200);
    assert.equal(seeded.status, 200, seeded.text);
    assert.equal((await auditFor(workerd, seeded.headers.get('x-request-id'))).sub, 'from-kv', 'a current entry is read (so the next checks are not vacuous)');
    // The first isolate holds the token's key: a signature check beats a KV read, so KV is not read.
    const local = await mcpPost(a, toolCall('echo', {}, 3), { authorization: `Bearer ${seededToken}` });
    assert.equal(local.status, 200, local.text);
    assert.equal((await auditFor(workerd, local.headers.get('x-request-id'))).sub, 'alice', 'an isolate with the key verifies the token itself');
    // Back at the keyless isolate, an expired entry is read and ignored: the token is verified.
    const stale = await callUntil(c, { authorization: `Bearer ${expiredEntryToken}` }, 200);
    assert.equal(stale.status, 200, stale.text);
    assert.equal((await auditFor(workerd, stale.headers.get('x-request-id'))).sub, 'alice', 'the expired entry was ignored and the token verified');
  });

  it('entries written without the Worker\'s MANDATE_EDGE_CACHE_KEY are not taken: a forged identity is refused, a planted one ignored', async () => {
    // The fourth isolate has served nothing yet: it holds no key, so it reads KV for each token.
    const d = workerd.mcp[3]!;
    // A real token whose genuine entry was replaced with other claims: the MAC fails, the token is verified.
    const planted = await mcpPost(d, toolCall('echo', {}, 5), { authorization: `Bearer ${plantedToken}` });
    assert.equal(planted.status, 200, planted.text);
    assert.equal((await auditFor(workerd, planted.headers.get('x-request-id'))).sub, 'alice', 'the planted claims were ignored');
    // The forged token's kid is unknown, so KV is read: its entry (under the old, computable key) is not found; refused.
    const forged = await mcpPost(d, toolCall('echo', {}, 6), { authorization: `Bearer ${forgedToken}` });
    assert.equal(forged.status, 401, forged.text);
    const refused = await auditFor(workerd, forged.headers.get('x-request-id'));
    assert.equal(refused.rejection, 'invalid_token');
    assert.notEqual(refused.sub, 'admin');
    assert.match(workerd.output(), /holds an entry whose MAC does not verify/);
  });
});

describe('a KV that fails costs a verification, never a refusal', skip, () => {
  let issuer: Issuer;
  let upstream: Upstream;
  let workerd: Workerd;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    workerd = await startWorkerd(issuer, upstream, ['--verified-tokens', 'unavailable']);
  });
  after(async () => {
    await workerd?.stop();
    await upstream?.close();
    await issuer?.close();
  });

  it('VERIFIED_TOKENS throwing on every call: the token is verified and let through; the failures are logged', async () => {
    const token = await issuer.sign({ sub: 'alice', aud: workerd.resource, client_id: 'agent-1', scope: 'banking:read' });
    const res = await mcpPost(workerd.mcp[0]!, toolCall('echo', { kv: 'down' }, 1), { authorization: `Bearer ${token}` });
    assert.equal(res.status, 200, res.text);
    const event = await auditFor(workerd, res.headers.get('x-request-id'));
    assert.equal(event.decision, 'allow');
    assert.equal(event.sub, 'alice');
    for (const operation of ['read', 'write']) {
      let logged = false;
      for (let i = 0; i < 50 && !logged; i++) {
        logged = workerd.output().includes(`the verified-token cache (KV) failed to ${operation}; the token is verified instead`);
        if (!logged) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(logged, `the failed ${operation} is logged:\n${workerd.output()}`);
    }
    assert.match(workerd.output(), /KV is unavailable \(edge-workerd --verified-tokens unavailable\)/);
  });
});

describe('the key set in the Cache API (KV off)', skip, () => {
  let issuer: Issuer;
  let upstream: Upstream;
  let workerd: Workerd;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    workerd = await startWorkerd(issuer, upstream, ['--instances', '3', '--verified-tokens', 'off']);
  });
  after(async () => {
    await workerd?.stop();
    await upstream?.close();
    await issuer?.close();
  });

  const bearer = async (claims: Record<string, unknown> = {}, kid?: string) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: workerd.resource, client_id: 'agent-1', scope: 'banking:read', ...claims }, kid ? { kid } : {})}` });

  it('a cold isolate reads the keys from the cache: one JWKS fetch for two isolates', async () => {
    const [a, b] = workerd.mcp as [string, string];
    assert.equal((await mcpPost(a, toolCall('echo', {}, 1), await bearer({ sub: 'first' }))).status, 200);
    assert.equal(issuer.jwksHits, 1);
    // Another token (no verified-token cache here): the second isolate verifies its signature with
    // the keys the first one put in the cache.
    const res = await mcpPost(b, toolCall('echo', {}, 2), await bearer({ sub: 'second' }));
    assert.equal(res.status, 200, res.text);
    assert.equal(issuer.jwksHits, 1, 'the second isolate did not fetch the JWKS');
  });

  it('an unknown kid still makes an isolate fetch the JWKS, and the fresh set goes to the cache for the others', async () => {
    const [, b, c] = workerd.mcp as [string, string, string];
    await issuer.addKey('k2');
    const rotated = await mcpPost(b, toolCall('echo', {}, 3), await bearer({ sub: 'rotated' }, 'k2'));
    assert.equal(rotated.status, 200, rotated.text);
    assert.equal(issuer.jwksHits, 2, 'the cached set lacked k2: fetched again');
    // A third, cold isolate: the set it reads from the cache already has k2.
    const cold = await mcpPost(c, toolCall('echo', {}, 4), await bearer({ sub: 'cold' }, 'k2'));
    assert.equal(cold.status, 200, cold.text);
    assert.equal(issuer.jwksHits, 2, 'the cache had the set with k2');
  });
});
