/**
 * The edge section of `npm run bench` (`--only=edge`, issue 16): the latency of an MCP `tools/call`
 * through the gateway with a cached verification against a cold one (a new token each call), in
 * workerd (the Worker bundle under Miniflare, `.cache/edge`) and on Node (`startGateway`), and the
 * latency each adds over calling the upstream directly. Skipped, with the reason printed, when
 * `.cache/edge` is missing (`npm run edge:install`).
 *
 * One connection per target, one call at a time, each timed in this process (workerd's own clocks
 * only advance across I/O): p50 / p99 per target. Calls are interleaved across the targets (call i
 * to each, in a random order), so that a noisy neighbour slows them all alike.
 * Every target gets the same request bytes but its token. Targets:
 *
 *   direct                 the trivial upstream (bench/gateway-upstream.ts), no proxy
 *   bare Worker proxy      workerd forwarding with fetch and nothing else: the platform's floor
 *   node, cached           the Node gateway, the same token every call (its verified-token memory)
 *   node, new token        a token never seen before each call: signature checked every call
 *   workerd, cached        the Worker, the same token (the isolate's memory)
 *   workerd, new token     a new token each call: signature (the isolate holds the key, so no KV
 *                          read), KV write (waitUntil)
 *   workerd no KV, …       the same Worker without VERIFIED_TOKENS (another workerd): one token,
 *                          and a new token each call (memory miss, signature, no KV)
 *   workerd, KV hit        tokens first verified by another isolate: this one, which never verified
 *                          a signature and so holds no key, reads KV
 *
 * Both gateways run the same route: ES256 at+jwt (RFC 9068) from an issuer in this process, one
 * tool rule (scope + CEL), the audit event of each call (a JSONL file on Node, a console.log line in
 * workerd). No rate limit: in workerd it is a Durable Object round trip, not verification.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'undici';
import { jwtValidator, issuerMetadata } from '../src/gateway/token-validator.ts';
import { startFakeIssuer } from '../test/helpers/gateway.ts';
import { BENCH_CLIENT_ID, GATEWAY_SCOPE, GATEWAY_TOOL, freePort } from './lib/child.ts';
import { assertLoopback, percentile } from './lib/load.ts';
import { startServer, stopServer, type ServerChild } from './lib/processes.ts';
import { fmtFixed, summarize, table } from './lib/stats.ts';

export interface EdgeSettings {
  duration: number;
  reps: number;
}

/** The goal of issue 16: a cached check adds at most this much (p50). */
const GOAL_CACHED_CHECK_MS = 0.1;
const STARTUP_MS = 60_000;
const BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: GATEWAY_TOOL, arguments: { text: 'ok' } } });
const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };

/** Calls per target per repetition (and a tenth of that, once, to warm up). */
const callsPer = (settings: EdgeSettings) => Math.round(Number(process.env.BENCH_EDGE_CALLS) || (settings.duration <= 3 ? 500 : 2000));

export function edgeEstimateSeconds(settings: EdgeSettings): number {
  // Start-up (bundle, workerd, Node gateway) and, per call, well under 5 ms on this machine.
  return 80 + (settings.reps * 9 * callsPer(settings) * 1.2 * 5) / 1000;
}

function edgeNode(root: string): string | undefined {
  const node = join(root, '.cache/edge/node_modules/node/bin/node');
  return existsSync(node) && existsSync(join(root, '.cache/edge/node_modules/miniflare/package.json')) ? node : undefined;
}

/** The route both gateways run, for `resource`. */
const routeFor = (upstream: string, issuer: string, resource: string) => ({
  path: '/mcp',
  upstream,
  resource,
  authorization_servers: [issuer],
  tools: { [GATEWAY_TOOL]: { scopes: [GATEWAY_SCOPE], allow: 'size(act) <= 1', reason: 'no chains of delegation' } },
  unlisted_tools: 'allow',
});

interface Workerd {
  urls: string[];
  child: ChildProcess;
}

/** The bundle in workerd (scripts/edge-workerd.mjs), `instances` isolates sharing KV and the cache. */
async function startWorkerd(root: string, node22: string, args: string[]): Promise<Workerd> {
  // MANDATE_EDGE_CACHE_KEY (a fresh random one per run) turns on the KV and Cache API caches; through the environment, never a command line.
  const child = spawn(node22, ['scripts/edge-workerd.mjs', '--host', '127.0.0.1', '--env-binding', 'MANDATE_EDGE_CACHE_KEY', ...args], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, MANDATE_EDGE_CACHE_KEY: randomBytes(32).toString('base64url') },
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const urls = await new Promise<string[]>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`workerd did not start in ${STARTUP_MS} ms:\n${stdout}\n${stderr}`)), STARTUP_MS);
    const onData = (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split('\n').find((l) => l.startsWith('{"url":'));
      if (line && stdout.slice(stdout.indexOf(line) + line.length).includes('\n')) {
        clearTimeout(timer);
        // From now on the Worker's output (an audit line per call) is read and dropped.
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        const parsed = JSON.parse(line) as { url: string; urls?: string[] };
        ready(parsed.urls ?? [parsed.url]);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`workerd exited (${code}):\n${stdout}\n${stderr}`));
    });
  });
  return { urls, child };
}

function stopWorkerd(workerd: Workerd | undefined): Promise<void> {
  const child = workerd?.child;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    // The runner disposes of workerd on SIGTERM (and when its stdin closes, should the bench die).
    child.kill('SIGTERM');
  });
}

/** A target: where the calls go, and the token of call `i` (`prepare` runs before each repetition). */
interface Target {
  name: string;
  url: string;
  token: (i: number) => string;
  prepare?: (calls: number) => Promise<void>;
}

/** One keep-alive connection to a target: `call(i)` sends call `i` and resolves with its latency in ms. */
function caller(target: Target): { call(i: number): Promise<number>; close(): Promise<void> } {
  const url = new URL(target.url);
  assertLoopback(url.href);
  const client = new Client(url.origin, { pipelining: 1 });
  return {
    async call(i) {
      const headers = { ...MCP_HEADERS, authorization: `Bearer ${target.token(i)}` };
      const t0 = performance.now();
      const { statusCode, body } = await client.request({ path: url.pathname, method: 'POST', headers, body: BODY });
      const text = await body.text();
      const ms = performance.now() - t0;
      // Every answer must be the upstream's echo: a refusal would be timed as if it were a call.
      if (statusCode !== 200 || !text.includes('"ok"')) throw new Error(`${target.name}: call ${i} answered ${statusCode}: ${text.slice(0, 300)}`);
      return ms;
    },
    close: () => client.close(),
  };
}

/** `calls` sequential calls to one target (warm-ups), from call `offset` on. */
async function callMany(target: Target, calls: number, offset = 0): Promise<void> {
  const one = caller(target);
  try {
    for (let i = 0; i < calls; i++) await one.call(offset + i);
  } finally {
    await one.close();
  }
}

/** In this process: `validate()` of a token the validator has verified before (its memory), µs per call. */
async function cachedCheckMicros(issuer: Awaited<ReturnType<typeof startFakeIssuer>>): Promise<number> {
  const audience = 'https://bench.test/mcp';
  const validator = jwtValidator({
    issuer: issuer.issuer,
    audience,
    metadata: issuerMetadata(issuer.issuer),
    jwksUri: `${issuer.issuer}/jwks`,
    algorithms: ['ES256'],
    typ: 'at+jwt',
    clockSkewSeconds: 5,
    refreshSeconds: 300,
    minRefreshSeconds: 10,
    cacheEntries: 10_000,
    schedule: 'on-use',
  });
  try {
    const token = await issuer.sign({ sub: 'bench-user', aud: audience, client_id: BENCH_CLIENT_ID, exp: Math.floor(Date.now() / 1000) + 3600 });
    await validator.validate(token);
    const n = 200_000;
    for (let i = 0; i < n / 10; i++) await validator.validate(token);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await validator.validate(token);
    return ((performance.now() - t0) * 1000) / n;
  } finally {
    validator.close();
  }
}

export async function edgeSection(root: string, settings: EdgeSettings): Promise<string> {
  console.log('\n== Edge: verification latency, cached vs a new token, workerd and Node ==');
  const node22 = edgeNode(root);
  if (!node22) {
    const reason = 'Edge section skipped: .cache/edge is missing (run `npm run edge:install`: Miniflare, workerd and Node 22).';
    console.log(`  ${reason}`);
    return reason;
  }
  const calls = callsPer(settings);
  const warm = Math.max(20, Math.round(calls / 10));
  const dir = mkdtempSync(join(tmpdir(), 'mandate-bench-edge-'));
  const issuer = await startFakeIssuer();
  let upstream: ServerChild | undefined;
  let nodeGateway: ServerChild | undefined;
  let workerd: Workerd | undefined;
  let bare: Workerd | undefined;
  let noKv: Workerd | undefined;
  try {
    const script = join(dir, 'gateway.js');
    const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--outfile', script], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    if (built.status !== 0) throw new Error(`edge build failed:\n${built.stderr}`);
    upstream = await startServer('upstream:trivial', 'bench/gateway-upstream.ts', { cwd: root, env: { LOG_LEVEL: 'silent', BENCH_UPSTREAM: 'trivial' } });

    const nodePort = await freePort();
    const nodeResource = `http://127.0.0.1:${nodePort}/mcp`;
    nodeGateway = await startServer('gateway (node)', 'bench/edge-gateway-node.ts', {
      cwd: root,
      env: { LOG_LEVEL: 'silent', BENCH_PORT: String(nodePort), BENCH_GATEWAY_ROUTE: JSON.stringify(routeFor(upstream.tokenEndpoint, issuer.issuer, nodeResource)) },
    });

    const workerdPort = await freePort();
    const workerdResource = `http://127.0.0.1:${workerdPort}/mcp`;
    const config = join(dir, 'gateway.json');
    writeFileSync(config, JSON.stringify({ routes: [routeFor(upstream.tokenEndpoint, issuer.issuer, workerdResource)] }));
    workerd = await startWorkerd(root, node22, ['--config', config, '--script', script, '--port', String(workerdPort), '--instances', '2']);
    const [workerdA, workerdB] = workerd.urls as [string, string];

    // The floor: a Worker that forwards with fetch and does nothing else (the runner binds its
    // GATEWAY_STATE to the class it names, hence the empty one).
    const bareScript = join(dir, 'bare.js');
    writeFileSync(
      bareScript,
      `export class GatewayState {}
export default { fetch(request, env) { return fetch(env.UPSTREAM, { method: request.method, headers: request.headers, body: request.body }); } };\n`,
    );
    bare = await startWorkerd(root, node22, ['--config', config, '--script', bareScript, '--port', String(await freePort()), '--verified-tokens', 'off', '--binding', `UPSTREAM=${upstream.tokenEndpoint}`]);

    // The same Worker without the KV binding: what a new token costs without the KV read and write.
    const noKvPort = await freePort();
    const noKvResource = `http://127.0.0.1:${noKvPort}/mcp`;
    const noKvConfig = join(dir, 'gateway-no-kv.json');
    writeFileSync(noKvConfig, JSON.stringify({ routes: [routeFor(upstream.tokenEndpoint, issuer.issuer, noKvResource)] }));
    noKv = await startWorkerd(root, node22, ['--config', noKvConfig, '--script', script, '--port', String(noKvPort), '--verified-tokens', 'off']);

    const sign = (aud: string) => () =>
      issuer.sign({ sub: 'bench-user', aud, client_id: BENCH_CLIENT_ID, scope: GATEWAY_SCOPE, act: { sub: 'bench-agent', client_id: BENCH_CLIENT_ID }, exp: Math.floor(Date.now() / 1000) + 3600 });
    const signMany = async (aud: string, n: number) => Promise.all(Array.from({ length: n }, sign(aud)));
    const nodeToken = await sign(nodeResource)();
    const workerdToken = await sign(workerdResource)();
    const noKvToken = await sign(noKvResource)();
    let nodeFresh: string[] = [];
    let workerdFresh: string[] = [];
    let viaOther: string[] = [];
    let noKvFresh: string[] = [];
    const targets: Target[] = [
      { name: 'direct (no proxy)', url: upstream.tokenEndpoint, token: () => nodeToken },
      { name: 'bare Worker proxy', url: `${bare.urls[0]}/mcp`, token: () => workerdToken },
      { name: 'node, cached', url: `${nodeGateway.url}/mcp`, token: () => nodeToken },
      { name: 'node, new token', url: `${nodeGateway.url}/mcp`, token: (i) => nodeFresh[i]!, prepare: async (n) => void (nodeFresh = await signMany(nodeResource, n)) },
      { name: 'workerd, cached', url: `${workerdA}/mcp`, token: () => workerdToken },
      { name: 'workerd, new token', url: `${workerdA}/mcp`, token: (i) => workerdFresh[i]!, prepare: async (n) => void (workerdFresh = await signMany(workerdResource, n)) },
      { name: 'workerd no KV, cached', url: `${noKv.urls[0]}/mcp`, token: () => noKvToken },
      { name: 'workerd no KV, new token', url: `${noKv.urls[0]}/mcp`, token: (i) => noKvFresh[i]!, prepare: async (n) => void (noKvFresh = await signMany(noKvResource, n)) },
      {
        name: 'workerd, KV hit',
        url: `${workerdB}/mcp`,
        token: (i) => viaOther[i]!,
        prepare: async (n) => {
          viaOther = await signMany(workerdResource, n);
          // Verified (and put in KV) by the first isolate; the second one reads them from KV.
          await callMany({ name: 'KV warm-up through the first isolate', url: `${workerdA}/mcp`, token: (i) => viaOther[i]! }, n);
          // The puts finish after each response (ctx.waitUntil): let the last ones land.
          await new Promise((r) => setTimeout(r, 1_000));
        },
      },
    ];
    console.log(`  ${targets.length} targets, ${calls} calls each per repetition, 1 connection each, calls interleaved across the targets (a random order per round), ${settings.reps} repetition(s)`);
    const endpoints: [string, string][] = [['upstream', upstream.tokenEndpoint], ['node gateway', nodeGateway.url], ['workerd gateway', workerd.urls.join(' ')], ['workerd, no KV', noKv.urls.join(' ')], ['bare Worker', bare.urls.join(' ')]];
    for (const [name, url] of endpoints) console.log(`  ${name.padEnd(16)} ${url}`);

    // Every target once before the measured repetitions, so no process measures its JIT's warm-up.
    for (const target of targets) {
      await target.prepare?.(warm);
      await callMany(target, warm);
    }
    const runs = new Map<string, { p50: number; p99: number; mean: number }[]>(targets.map((t) => [t.name, []]));
    for (let rep = 0; rep < settings.reps; rep++) {
      for (const target of targets) await target.prepare?.(calls);
      // Call i goes to every target, in a new random order each time: on a shared, noisy machine
      // each target then meets the same load, and none always follows another (a process called
      // twice in a row answers faster the second time: it is awake).
      const callers = targets.map(caller);
      const times = targets.map(() => [] as number[]);
      const order = targets.map((_, t) => t);
      try {
        for (let i = 0; i < calls; i++) {
          for (let k = order.length - 1; k > 0; k--) {
            const j = Math.floor(Math.random() * (k + 1));
            [order[k], order[j]] = [order[j]!, order[k]!];
          }
          for (const t of order) times[t]!.push(await callers[t]!.call(i));
        }
      } finally {
        await Promise.all(callers.map((c) => c.close()));
      }
      targets.forEach((target, t) => {
        const sorted = Float64Array.from(times[t]!).sort();
        const run = { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: times[t]!.reduce((a, b) => a + b, 0) / calls };
        runs.get(target.name)!.push(run);
        console.log(`  rep ${rep + 1}/${settings.reps}  ${target.name.padEnd(26)} p50 ${fmtFixed(run.p50, 3)} ms  p99 ${fmtFixed(run.p99, 3)} ms  mean ${fmtFixed(run.mean, 3)} ms`);
      });
    }
    const micros = await cachedCheckMicros(issuer);
    return report(settings, calls, runs, micros);
  } finally {
    await Promise.all([stopWorkerd(workerd), stopWorkerd(bare), stopWorkerd(noKv), upstream && stopServer(upstream.process), nodeGateway && stopServer(nodeGateway.process)]);
    await issuer.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(settings: EdgeSettings, calls: number, runs: Map<string, { p50: number; p99: number; mean: number }[]>, cachedMicros: number): string {
  const direct = runs.get('direct (no proxy)')!;
  // Per repetition, paired with the direct run of the same repetition; then the median.
  const added = (name: string) => summarize(runs.get(name)!.map((run, i) => run.p50 - direct[i]!.p50)).median;
  const median = (name: string, key: 'p50' | 'p99' | 'mean') => summarize(runs.get(name)!.map((run) => run[key])).median;
  const ms = (n: number) => fmtFixed(n, 3);
  const signed = (n: number) => `${n < 0 ? '−' : '+'}${fmtFixed(Math.abs(n), 3)}`;
  const rows = [...runs.keys()].map((name) => [name, ms(median(name, 'p50')), ms(median(name, 'p99')), ms(median(name, 'mean')), name.startsWith('direct') ? '—' : signed(added(name))]);
  const diff = (a: string, b: string) => median(a, 'p50') - median(b, 'p50');
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  return [
    `Edge: MCP tools/call through the gateway, trivial upstream, 1 connection per target, ${calls} calls per target per repetition interleaved across targets, ${settings.reps} rep(s) (medians over repetitions)`,
    '',
    table(['target', 'p50 ms', 'p99 ms', 'mean ms', 'added p50 ms (over direct)'], rows),
    '',
    `verification of a new token (p50, new token − cached): node ${signed(diff('node, new token', 'node, cached'))} ms; ` +
      `workerd ${signed(diff('workerd, new token', 'workerd, cached'))} ms (KV read, ES256 signature, KV write after the response), ${signed(diff('workerd no KV, new token', 'workerd no KV, cached'))} ms without KV`,
    `a token another isolate verified (p50, KV hit − cached): workerd ${signed(diff('workerd, KV hit', 'workerd, cached'))} ms`,
    `the gateway's whole chain over the bare Worker proxy (p50, workerd cached − bare): ${signed(diff('workerd, cached', 'bare Worker proxy'))} ms`,
    `a cached check itself (validate() of a token seen before, in process): ${fmtFixed(cachedMicros, 2)} µs (goal ≤ ${GOAL_CACHED_CHECK_MS} ms p50: ${verdict(cachedMicros / 1000 <= GOAL_CACHED_CHECK_MS)})`,
    '',
    'Latencies are timed in this process around each call (undici, keep-alive): client, loopback and server time. workerd runs under',
    'Miniflare locally (its KV is a local simulation, not the network round trip of Cloudflare KV). In-isolate time cannot be',
    'measured in workerd (its clocks advance only across I/O), so the cached check itself is timed on Node: the same code.',
  ].join('\n');
}
