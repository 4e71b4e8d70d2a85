/**
 * `npm run bench`: Mandate's token endpoint against oidc-provider's, in the same run, per
 * /work/shared/BENCHMARKS.md and docs/benchmarks.md. Both issue an ES256 JWT access token for one
 * resource to a confidential client (client_credentials, client_secret_basic). The gateway section
 * (bench/gateway.ts) measures an MCP tool call through Mandate's gateway against the upstream
 * directly and a bare undici proxy. The start-up section (bench/startup.ts) times `mandate --help`,
 * `mandate agent whoami` and `npm start`'s demo to ready (medians of 5). The edge section
 * (bench/edge.ts) times a gateway call with a cached verification against a new token each call, in
 * workerd and on Node (skipped, with the reason, without `.cache/edge`).
 *
 *   npm run bench                      full: 3 repetitions of 3 s warm-up + 10 s, then micro-benchmarks
 *   npm run bench -- --quick           1 repetition of 1 s warm-up + 3 s
 *   npm run bench -- --profile         also CPU-profile Mandate under load and rank where its time goes
 *   npm run bench -- --only=micro      sections: startup, http, micro, gateway, approval, edge, profile, dpop (comma-separated)
 *   npm run bench -- --profile-target=oidc-provider   (or mandate, mandate:exchange, both, gateway)
 *   npm run bench -- --only=gateway --gateway-upstream=trivial   (trivial, sdk or both, comma-separated)
 *   npm run bench -- --only=gateway --gateway-compare=base=../other-checkout   that checkout's gateway too
 *   npm run bench -- --only=gateway --gateway-probe=60x100   then a paired one-connection probe (60 rounds of 100 calls per target)
 *   npm run bench -- --only=gateway --gateway-floor   also a floor proxy: the gateway's kinds of work in one function (a lower bound)
 *   npm run bench -- --only=http --compare=mine=../other-checkout   Mandate from another checkout too
 *
 * Environment overrides: BENCH_DURATION, BENCH_WARMUP (seconds), BENCH_REPS, BENCH_CONNECTIONS,
 * BENCH_MICRO_SECONDS, BENCH_EDGE_CALLS; BENCH_MANDATE_ROOT=<checkout> makes "mandate" (and its profile) that checkout.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GATEWAY_UPSTREAMS, gatewayEstimateSeconds, gatewaySection, profileGateway, type GatewayUpstream } from './gateway.ts';
import { gatewayDpopSection } from './gateway-dpop.ts';
import { BENCH_CLIENT_ID, BENCH_RESOURCE, BENCH_SCOPE } from './lib/child.ts';
import { analyzeProfile } from './lib/profile.ts';
import { runMicroBenchmarks } from './lib/micro.ts';
import { startupSection } from './startup.ts';
import { approvalSection } from './approval.ts';
import { edgeEstimateSeconds, edgeSection } from './edge.ts';
import { assertLoopback, measureLoad, stopLoad, type LoadRequest } from './lib/load.ts';
import { CLK_TCK, startServer, stopAllServers, stopServer, type ServerChild } from './lib/processes.ts';
import { fmtFixed, fmtInt, fmtSummary, summarize, table } from './lib/stats.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const option = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const envNumber = (name: string, fallback: number) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
};

const quick = flag('quick');
const settings = {
  warmup: envNumber('BENCH_WARMUP', quick ? 1 : 3),
  duration: envNumber('BENCH_DURATION', quick ? 3 : 10),
  reps: Math.round(envNumber('BENCH_REPS', quick ? 1 : 3)),
  connections: Math.round(envNumber('BENCH_CONNECTIONS', 32)),
  microSeconds: envNumber('BENCH_MICRO_SECONDS', quick ? 1 : 2),
};
const sections = new Set((option('only') ?? `startup,http,micro,gateway,approval,edge${flag('profile') ? ',profile' : ''}`).split(','));
for (const s of sections) if (!['startup', 'http', 'micro', 'gateway', 'approval', 'edge', 'profile', 'dpop'].includes(s)) throw new Error(`unknown section ${s}; use startup, http, micro, gateway, approval, edge, profile, dpop`);
const profileTarget = option('profile-target') ?? 'mandate';
if (!['mandate', 'mandate:exchange', 'oidc-provider', 'both', 'gateway'].includes(profileTarget)) throw new Error('--profile-target must be mandate, mandate:exchange, oidc-provider, both or gateway');
// --gateway-compare=<label>=<dir>[,…]: the gateway of other checkouts, measured in the same run.
const gatewayCompare = (option('gateway-compare') ?? '')
  .split(',')
  .filter(Boolean)
  .map((entry) => {
    const [label, dir] = entry.includes('=') ? (entry.split('=', 2) as [string, string]) : [basename(resolve(entry)), entry];
    if (!existsSync(join(resolve(dir), 'src/gateway/node/server.ts'))) throw new Error(`--gateway-compare: ${dir} has no src/gateway/node/server.ts`);
    return { label, dir: resolve(dir) };
  });
// --gateway-probe=<rounds>x<calls>: a paired one-connection probe of the gateway's targets after their repetitions.
const gatewayProbe = ((value) => {
  if (value === undefined) return undefined;
  const match = /^(\d+)x(\d+)$/.exec(value);
  if (!match || Number(match[1]) < 1 || Number(match[2]) < 1) throw new Error(`--gateway-probe must be <rounds>x<calls> (e.g. 60x100), got ${value}`);
  return { rounds: Number(match[1]), calls: Number(match[2]) };
})(option('gateway-probe'));
// The gateway section's settings: the run's, with its own options (--gateway-floor: the floor proxy too).
const gatewaySettings = { ...settings, compare: gatewayCompare, probe: gatewayProbe, floor: flag('gateway-floor') };
const gatewayUpstreams = (option('gateway-upstream') ?? GATEWAY_UPSTREAMS.join(',')).split(',') as GatewayUpstream[];
for (const u of gatewayUpstreams) if (!GATEWAY_UPSTREAMS.includes(u)) throw new Error(`unknown --gateway-upstream ${u}; use ${GATEWAY_UPSTREAMS.join(', ')}`);

interface ServerSpec {
  name: string;
  script: string;
  env?: Record<string, string>;
}

const SERVERS: ServerSpec[] = [
  { name: 'mandate', script: 'bench/mandate-server.ts' },
  { name: 'oidc-provider', script: 'bench/oidc-provider-server.ts' },
  // Token exchange (RFC 8693) on Mandate, against oidc-provider's client-credentials tokens.
  { name: 'mandate:exchange', script: 'bench/mandate-server.ts', env: { BENCH_SCENARIO: 'exchange' } },
];
// --compare=<dir>[,<dir>…] or label=<dir>: Mandate from other checkouts (their src/, this bench),
// measured in the same run, interleaved with the others.
const COMPARE: ServerSpec[] = (option('compare') ?? '')
  .split(',')
  .filter(Boolean)
  .map((entry) => {
    const [label, dir] = entry.includes('=') ? (entry.split('=', 2) as [string, string]) : [basename(resolve(entry)), entry];
    if (!existsSync(join(resolve(dir), 'src/auth-server/server.ts'))) throw new Error(`--compare: ${dir} has no src/auth-server/server.ts`);
    return { name: `mandate:${label}`, script: 'bench/mandate-server.ts', env: { BENCH_MANDATE_ROOT: resolve(dir) } };
  });
const HTTP_SERVERS = [SERVERS[0]!, ...COMPARE, SERVERS[2]!, SERVERS[1]!];

const secret = randomBytes(32).toString('base64url');
const childEnv = { BENCH_SECRET: secret, LOG_LEVEL: 'silent' };
const authorization = `Basic ${Buffer.from(`${encodeURIComponent(BENCH_CLIENT_ID)}:${encodeURIComponent(secret)}`).toString('base64')}`;
// The same body for both: Mandate needs `resource` (else the audience is its issuer); oidc-provider
// accepts it too (and would default to the same resource without it).
const body = new URLSearchParams({ grant_type: 'client_credentials', scope: BENCH_SCOPE, resource: BENCH_RESOURCE }).toString();
const headers = { authorization, 'content-type': 'application/x-www-form-urlencoded' };

const request = (server: ServerChild): LoadRequest => ({ url: server.tokenEndpoint, method: 'POST', headers, body: server.body ?? body, connections: settings.connections });

/** One request, checked: a 200 with an ES256 JWT for the resource and scope. Returns a summary. */
async function verifyTokenEndpoint(server: ServerChild): Promise<string> {
  assertLoopback(server.tokenEndpoint);
  const res = await fetch(server.tokenEndpoint, { method: 'POST', headers, body: server.body ?? body, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${server.name}: token request answered ${res.status}: ${text}`);
  const json = JSON.parse(text) as { access_token?: string; token_type?: string; expires_in?: number; scope?: string };
  const parts = json.access_token?.split('.') ?? [];
  if (parts.length !== 3) throw new Error(`${server.name}: access_token is not a compact JWS: ${text}`);
  const decode = (s: string) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Record<string, unknown>;
  const header = decode(parts[0]!);
  const claims = decode(parts[1]!);
  if (header.alg !== 'ES256') throw new Error(`${server.name}: alg ${String(header.alg)}, expected ES256`);
  if (claims.aud !== BENCH_RESOURCE) throw new Error(`${server.name}: aud ${JSON.stringify(claims.aud)}, expected ${BENCH_RESOURCE}`);
  if (claims.scope !== BENCH_SCOPE) throw new Error(`${server.name}: scope ${JSON.stringify(claims.scope)}, expected ${BENCH_SCOPE}`);
  return `${server.name.padEnd(13)} ok: ${json.access_token!.length}-char JWT, header ${JSON.stringify(header).replace(/"kid":"[^"]+"/, '"kid":…')}, claims ${Object.keys(claims).sort().join(',')}, expires_in ${json.expires_in}`;
}

interface Run {
  tokensPerSecond: number;
  cpuMicrosPerToken: number;
  serverCpuPercent: number;
  loadgenCpuPercent: number;
  /** CPU the machine spent on anything but the server and autocannon (other tenants, the idle peer). */
  otherCpuPercent: number;
  latencyMean: number;
  latencyP99: number;
  non2xx: number;
  errors: number;
  statusCodes: string;
  /** The measured interval in µs on the monotonic clock, to cut a CPU profile to it. */
  window: { start: number; end: number };
}

async function measure(server: ServerChild): Promise<Run> {
  const m = await measureLoad(request(server), settings, [server.pid], server.name);
  const cpu = m.cpu[0]!;
  return {
    tokensPerSecond: m.requestsPerSecond,
    cpuMicrosPerToken: m.ok > 0 ? cpu / m.ok : NaN,
    serverCpuPercent: (cpu / m.wallMicros) * 100,
    loadgenCpuPercent: (m.loadgenMicros / m.wallMicros) * 100,
    otherCpuPercent: (m.otherMicros / m.wallMicros) * 100,
    latencyMean: m.latency.mean,
    latencyP99: m.latency.p99,
    non2xx: m.non2xx,
    errors: m.errors,
    window: m.window,
    statusCodes: m.statusCodes,
  };
}

async function httpSection(): Promise<string> {
  console.log(`\n== Token endpoint: client_credentials → ES256 JWT access token ==`);
  console.log(
    `${settings.connections} connections, ${settings.warmup} s warm-up + ${settings.duration} s measured, ${settings.reps} repetition(s), scenarios interleaved (order rotates)`,
  );
  const servers: ServerChild[] = [];
  for (const s of HTTP_SERVERS) servers.push(await startServer(s.name, s.script, { cwd: root, env: { ...childEnv, ...s.env } }));
  const width = Math.max(...servers.map((s) => s.name.length));
  for (const s of servers) console.log(`  ${s.name.padEnd(width)} pid ${s.pid}, ${s.tokenEndpoint}`);
  for (const s of servers) console.log(`  verify ${await verifyTokenEndpoint(s)}`);

  const runs = new Map<string, Run[]>(servers.map((s) => [s.name, []]));
  for (let rep = 0; rep < settings.reps; rep++) {
    const order = servers.map((_, i) => servers[(i + rep) % servers.length]!);
    for (const server of order) {
      const run = await measure(server);
      runs.get(server.name)!.push(run);
      console.log(
        `  rep ${rep + 1}/${settings.reps}  ${server.name.padEnd(width)} ${fmtInt(run.tokensPerSecond).padStart(7)} tokens/s  ${fmtFixed(run.cpuMicrosPerToken, 1).padStart(7)} µs CPU/token  ` +
          `server CPU ${fmtInt(run.serverCpuPercent)} %  autocannon ${fmtInt(run.loadgenCpuPercent)} %  other ${fmtInt(run.otherCpuPercent)} %  latency mean ${fmtFixed(run.latencyMean)} ms p99 ${fmtFixed(run.latencyP99)} ms  ` +
          `non-2xx ${run.non2xx}  errors ${run.errors}${run.non2xx ? `  (${run.statusCodes})` : ''}`,
      );
    }
  }
  for (const s of servers) await stopServer(s.process);

  const summaries = new Map(
    servers.map((server) => {
      const list = runs.get(server.name)!;
      return [
        server.name,
        {
          tps: summarize(list.map((r) => r.tokensPerSecond)),
          cpu: summarize(list.map((r) => r.cpuMicrosPerToken)),
          serverCpu: summarize(list.map((r) => r.serverCpuPercent)),
          otherCpu: summarize(list.map((r) => r.otherCpuPercent)),
          latency: summarize(list.map((r) => r.latencyMean)),
          non2xx: list.reduce((n, r) => n + r.non2xx, 0),
          errors: list.reduce((n, r) => n + r.errors, 0),
        },
      ] as const;
    }),
  );
  const rows = [...summaries].map(([name, s]) => [
    name,
    fmtSummary(s.tps),
    fmtSummary(s.cpu, (n) => fmtFixed(n, 0)),
    fmtInt(s.serverCpu.median),
    fmtInt(s.otherCpu.max),
    fmtFixed(s.latency.median),
    String(s.non2xx),
    String(s.errors),
  ]);
  const ratio = (a: string, b: string) => {
    const x = summaries.get(a)!;
    const y = summaries.get(b)!;
    return `${a} / ${b} (medians): throughput ${fmtFixed(x.tps.median / y.tps.median)}×, CPU per token ${fmtFixed(x.cpu.median / y.cpu.median)}× (below 1 is better)`;
  };
  const lines = [
    `Token endpoint, client_credentials → ES256 JWT (${settings.connections} connections, ${settings.duration} s after ${settings.warmup} s warm-up, ${settings.reps} rep(s); min / median / max)`,
    '',
    table(['server', 'tokens/s', 'CPU µs/token', 'server CPU % (med)', 'other load % (max)', 'latency ms (med)', 'non-2xx', 'errors'], rows),
    '',
    `CPU % is of one core (the machine has ${availableParallelism()}); "other load" is machine CPU used by neither the server nor autocannon — high values mean a noisy run.`,
    '',
    ...HTTP_SERVERS.filter((s) => s.name !== 'oidc-provider').map((s) => ratio(s.name, 'oidc-provider')),
    ...COMPARE.map((s) => ratio(s.name, 'mandate')),
  ];
  const failed = [...summaries.values()].some((s) => s.non2xx + s.errors > 0);
  if (failed) lines.push('WARNING: some responses were not 2xx or failed: see the per-run lines above.');
  return lines.join('\n');
}

async function profileSection(): Promise<string> {
  if (profileTarget === 'gateway') return profileGateway(root, settings);
  const targets = SERVERS.filter((s) => profileTarget === 'both' || s.name === profileTarget);
  const reports: string[] = [];
  for (const target of targets) {
    const dir = mkdtempSync(join(tmpdir(), `bench-prof-${target.name}-`));
    console.log(`\n== CPU profile of ${target.name} under load (${settings.warmup} s warm-up + ${settings.duration} s) ==`);
    const sourceMaps = join(dir, 'sourcemaps.json');
    const server = await startServer(target.name, target.script, {
      cwd: root,
      env: { ...childEnv, ...target.env, BENCH_SOURCEMAPS_OUT: sourceMaps },
      execArgv: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
    });
    await verifyTokenEndpoint(server);
    const run = await measure(server);
    console.log(`  ${fmtInt(run.tokensPerSecond)} tokens/s with the profiler on, non-2xx ${run.non2xx}`);
    await stopServer(server.process, 15_000);
    // One file per thread: `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`; thread 0 is the main
    // thread (tsx's module-loader thread writes another).
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    const file = files.find((f) => f.includes(`.${server.pid}.0.`)) ?? files[0];
    if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
    // BENCH_MANDATE_ROOT=<dir> profiles Mandate from another checkout (see --compare).
    reports.push(analyzeProfile(join(dir, file), resolve(process.env.BENCH_MANDATE_ROOT ?? root), { sourceMaps, window: run.window }));
  }
  return reports.join('\n\n');
}

async function main() {
  const estimate =
    (sections.has('startup') ? 60 : 0) +
    (sections.has('http') ? HTTP_SERVERS.length * settings.reps * (settings.warmup + settings.duration + 2) + 20 : 0) +
    (sections.has('micro') ? 8 * (settings.microSeconds * 1.25 + 0.5) : 0) +
    (sections.has('gateway') ? gatewayEstimateSeconds(gatewaySettings, gatewayUpstreams) : 0) +
    (sections.has('approval') ? 60 : 0) +
    (sections.has('edge') ? edgeEstimateSeconds(settings) : 0) +
    (sections.has('profile') ? (profileTarget === 'both' ? 2 : 1) * (settings.warmup + settings.duration + 20) : 0) +
    (sections.has('dpop') ? 30 : 0);
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${Math.round(estimate * 1.5 + 60)} s; giving up`);
    void shutdown(2);
  }, (estimate * 1.5 + 60) * 1000);
  watchdog.unref();

  console.log(`Mandate benchmark — Node ${process.version}, ${availableParallelism()} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), CLK_TCK ${CLK_TCK}`);
  console.log(`sections: ${[...sections].join(', ')}; at most about ${Math.round(estimate)} s`);

  const report: string[] = [];
  if (sections.has('startup')) report.push(await startupSection(root));
  if (sections.has('http')) report.push(await httpSection());
  if (sections.has('micro')) {
    console.log(`\n== Micro-benchmarks (${settings.microSeconds} s each) ==`);
    report.push(await runMicroBenchmarks(settings.microSeconds));
  }
  if (sections.has('gateway')) report.push(await gatewaySection(root, gatewaySettings, gatewayUpstreams));
  if (sections.has('approval')) report.push(await approvalSection());
  if (sections.has('edge')) report.push(await edgeSection(root, settings));
  if (sections.has('profile')) report.push(await profileSection());
  // Issue 17: what DPoP verification adds per request at the gateway (in process; --only=dpop).
  if (sections.has('dpop')) report.push(await gatewayDpopSection(quick ? 500 : 3000));

  console.log(`\n${'='.repeat(100)}\n${report.join(`\n\n${'-'.repeat(100)}\n`)}\n`);
}

let shuttingDown = false;
async function shutdown(code: number) {
  if (shuttingDown) return;
  shuttingDown = true;
  stopLoad();
  await stopAllServers();
  process.exit(code);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`\nbench: ${signal}, stopping`);
    void shutdown(130);
  });
}

main().then(
  () => shutdown(0),
  (error: unknown) => {
    console.error('bench failed:', error);
    void shutdown(1);
  },
);
