/**
 * The gateway section of `npm run bench` (`--only=gateway`): an MCP `tools/call` through Mandate's
 * gateway, against the same call to the upstream directly and through a bare `undici`
 * `Pool.stream()` proxy, in the same run, interleaved (per /work/shared/BENCHMARKS.md).
 *
 * Per upstream variant (bench/gateway-upstream.ts: `trivial`, `sdk`) four children run: the
 * upstream, the bare proxy (bench/gateway-bare-proxy.ts) and the gateway with its issuer
 * (bench/gateway-server.ts). Each repetition loads every target at N connections (throughput, CPU
 * per request, p50 / p99), then every target at one connection (the latency a proxy adds).
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATEWAY_TOOL } from './lib/child.ts';
import { assertLoopback, measureLoad, type LoadRequest, type LoadTiming, type Measurement } from './lib/load.ts';
import { startServer, stopServer, type ServerChild } from './lib/processes.ts';
import { medianInterval, medianPairedDifference, pairedDifferences, pairedProbe, type ProbeResult } from './lib/probe.ts';
import { analyzeProfile } from './lib/profile.ts';
import { fmtFixed, fmtInt, fmtSummary, summarize, table } from './lib/stats.ts';

export const GATEWAY_UPSTREAMS = ['trivial', 'sdk'] as const;
export type GatewayUpstream = (typeof GATEWAY_UPSTREAMS)[number];

export interface GatewaySettings {
  warmup: number;
  duration: number;
  reps: number;
  connections: number;
  /**
   * `--gateway-compare=<label>=<dir>`: the gateway of other checkouts (their src/, this bench), as
   * more targets in the same run, interleaved with the others — a change measured against its base.
   */
  compare?: { label: string; dir: string }[];
  /**
   * `--gateway-probe=<rounds>x<calls>`: after the repetitions, a paired one-connection probe of every
   * target (bench/lib/probe.ts), its figures taken against the bare proxy's round by round.
   */
  probe?: { rounds: number; calls: number };
  /**
   * `--gateway-floor`: one more target, bench/gateway-floor-proxy.ts — the gateway's kinds of work
   * in one straight-line function, a lower bound on what a gateway fast path could cost.
   */
  floor?: boolean;
}

/**
 * The goals printed beside the figures (issue 18 part 4: the gateway's budget over a bare proxy):
 * CPU per request at most 1.5× the bare proxy's, added latency at one connection at most the bare
 * proxy's + 0.1 ms, throughput at least 0.95× the bare proxy's.
 */
const GOAL_THROUGHPUT_OF_BARE = 0.95;
const GOAL_CPU_OF_BARE = 1.5;
const GOAL_ADDED_LATENCY_OVER_BARE_MS = 0.1;

const DESCRIPTION: Record<GatewayUpstream, string> = {
  trivial: 'trivial upstream: a plain node:http server answering a fixed JSON-RPC result',
  sdk: 'MCP SDK v1 upstream: a new McpServer + stateless StreamableHTTPServerTransport (JSON responses) per request, one shared JSON-schema validator, tool echo',
};

const DIRECT = 'direct';
const BARE = 'undici Pool.stream';
const GATEWAY = 'mandate gateway';
const FLOOR = 'floor proxy';
let WIDTH = Math.max(DIRECT.length, BARE.length, GATEWAY.length);

const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: GATEWAY_TOOL, arguments: { text: 'ok' } } });
const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };

interface Target {
  name: string;
  url: string;
  /** The proxy in front of the upstream; none for the direct target. */
  proxy?: ServerChild;
  /** Request headers of its own (a compared gateway's token); else the run's. */
  headers?: Record<string, string>;
}

interface Run {
  requestsPerSecond: number;
  proxyCpuPerRequest: number;
  upstreamCpuPerRequest: number;
  proxyCpuPercent: number;
  loadgenCpuPercent: number;
  otherCpuPercent: number;
  mean: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  statusCodes: string;
  window: { start: number; end: number };
}

/**
 * One connection: the latency a proxy adds. Its CPU is printed per run but not summarized: a
 * process mostly idle between requests pays more per request than under load.
 */
const latencyTiming = (settings: GatewaySettings): LoadTiming => ({ warmup: Math.min(settings.warmup, 1), duration: Math.min(settings.duration, 5) });

/** Seconds the section takes at most (children start-up included), for the run's watchdog. */
export function gatewayEstimateSeconds(settings: GatewaySettings, upstreams: readonly GatewayUpstream[]): number {
  const latency = latencyTiming(settings);
  const targets = 3 + (settings.compare?.length ?? 0) + (settings.floor ? 1 : 0);
  const perRep = targets * (settings.warmup + settings.duration + 1 + latency.warmup + latency.duration + 1);
  // The probe: its rounds at ~2 ms per call at worst, and the warm-up calls.
  const probe = settings.probe ? (targets * (settings.probe.rounds * settings.probe.calls + 200) * 2) / 1000 : 0;
  return upstreams.length * (settings.reps * perRep + probe + 20);
}

function start(root: string, name: string, script: string, env: Record<string, string>, execArgv?: string[]): Promise<ServerChild> {
  return startServer(name, script, { cwd: root, env: { LOG_LEVEL: 'silent', ...env }, execArgv });
}

/** The upstream, the bare proxy and the gateway in front of it (started in that order). */
async function startTargets(root: string, upstream: GatewayUpstream, compare: GatewaySettings['compare'] = [], floor = false): Promise<{ children: ServerChild[]; targets: Target[]; headers: Record<string, string> }> {
  const children: ServerChild[] = [];
  try {
    const server = await start(root, `upstream:${upstream}`, 'bench/gateway-upstream.ts', { BENCH_UPSTREAM: upstream });
    children.push(server);
    const bare = await start(root, 'bare-proxy', 'bench/gateway-bare-proxy.ts', { BENCH_UPSTREAM_URL: server.url });
    children.push(bare);
    const gateway = await start(root, 'gateway', 'bench/gateway-server.ts', { BENCH_UPSTREAM_URL: server.url });
    children.push(gateway);
    const others: Target[] = [];
    for (const { label, dir } of compare) {
      // Its own issuer signs its own token: the request carries this target's token instead.
      const other = await start(root, `gateway:${label}`, 'bench/gateway-server.ts', { BENCH_UPSTREAM_URL: server.url, BENCH_MANDATE_ROOT: dir });
      children.push(other);
      others.push({ name: `${GATEWAY}:${label}`, url: other.tokenEndpoint, proxy: other, headers: other.headers });
    }
    if (floor) {
      const proxy = await start(root, 'floor-proxy', 'bench/gateway-floor-proxy.ts', { BENCH_UPSTREAM_URL: server.url });
      children.push(proxy);
      others.push({ name: FLOOR, url: proxy.tokenEndpoint, proxy });
    }
    WIDTH = Math.max(WIDTH, ...others.map((t) => t.name.length));
    return {
      children,
      targets: [
        { name: DIRECT, url: server.tokenEndpoint },
        { name: BARE, url: bare.tokenEndpoint, proxy: bare },
        { name: GATEWAY, url: gateway.tokenEndpoint, proxy: gateway },
        ...others,
      ],
      // The gateway's token goes to every target, so all three get the same request bytes.
      headers: { ...MCP_HEADERS, ...gateway.headers },
    };
  } catch (error) {
    await Promise.all(children.map((child) => stopServer(child.process)));
    throw error;
  }
}

/** One call, checked: 200 and the echo result. The gateway must also refuse a call without a token. */
async function verify(target: Target, runHeaders: Record<string, string>): Promise<string> {
  assertLoopback(target.url);
  const headers = target.headers ? { ...runHeaders, ...target.headers } : runHeaders;
  const post = (h: Record<string, string>) => fetch(target.url, { method: 'POST', headers: h, body, signal: AbortSignal.timeout(10_000) });
  const res = await post(headers);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${target.name}: tools/call answered ${res.status}: ${text}`);
  let json: { result?: { content?: { text?: string }[] } };
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    throw new Error(`${target.name}: tools/call answered ${res.headers.get('content-type')}, not JSON: ${text}`);
  }
  if (json.result?.content?.[0]?.text !== 'ok') throw new Error(`${target.name}: unexpected tools/call result ${text}`);
  let note = '';
  if (target.name.startsWith(GATEWAY)) {
    const { authorization: _, ...anonymous } = headers;
    const refused = await post(anonymous);
    await refused.arrayBuffer();
    if (refused.status !== 401) throw new Error(`${target.name}: a call without a token answered ${refused.status}, expected 401`);
    note = '; without a token: 401';
  }
  return `${target.name.padEnd(WIDTH)} ok: 200 ${res.headers.get('content-type')}, ${text.length} bytes${note}`;
}

function toRun(m: Measurement, proxy: boolean): Run {
  const [proxyCpu, upstreamCpu] = proxy ? m.cpu : [NaN, m.cpu[0]!];
  return {
    requestsPerSecond: m.requestsPerSecond,
    proxyCpuPerRequest: m.ok > 0 ? proxyCpu! / m.ok : NaN,
    upstreamCpuPerRequest: m.ok > 0 ? upstreamCpu! / m.ok : NaN,
    proxyCpuPercent: (proxyCpu! / m.wallMicros) * 100,
    loadgenCpuPercent: (m.loadgenMicros / m.wallMicros) * 100,
    otherCpuPercent: (m.otherMicros / m.wallMicros) * 100,
    mean: m.latency.mean,
    p50: m.latency.p50,
    p99: m.latency.p99,
    non2xx: m.non2xx,
    errors: m.errors,
    statusCodes: m.statusCodes,
    window: m.window,
  };
}

async function measureTarget(target: Target, upstream: ServerChild, headers: Record<string, string>, connections: number, timing: LoadTiming): Promise<Run> {
  const request: LoadRequest = { url: target.url, method: 'POST', headers: target.headers ? { ...headers, ...target.headers } : headers, body, connections };
  const pids = target.proxy ? [target.proxy.pid, upstream.pid] : [upstream.pid];
  return toRun(await measureLoad(request, timing, pids, `${target.name} (${connections} conn.)`), target.proxy !== undefined);
}

const sum = (runs: Run[], key: 'non2xx' | 'errors') => runs.reduce((n, r) => n + r[key], 0);

async function upstreamSection(root: string, settings: GatewaySettings, upstream: GatewayUpstream): Promise<string> {
  const latency = latencyTiming(settings);
  console.log(`\n== Gateway: MCP tools/call, ${DESCRIPTION[upstream]} ==`);
  console.log(
    `${settings.connections} connections, ${settings.warmup} s warm-up + ${settings.duration} s measured; then 1 connection, ${latency.warmup} s + ${latency.duration} s; ` +
      `${settings.reps} repetition(s), targets interleaved (order rotates)`,
  );
  const { children, targets, headers } = await startTargets(root, upstream, settings.compare, settings.floor);
  const [server] = children as [ServerChild];
  const loaded = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
  const single = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
  let probed: ProbeResult[] | undefined;
  try {
    for (const child of children) console.log(`  ${child.name.padEnd(16)} pid ${child.pid}, ${child.tokenEndpoint}`);
    for (const target of targets) console.log(`  verify ${await verify(target, headers)}`);

    for (let rep = 0; rep < settings.reps; rep++) {
      const order = targets.map((_, i) => targets[(i + rep) % targets.length]!);
      for (const target of order) {
        const run = await measureTarget(target, server, headers, settings.connections, settings);
        loaded.get(target.name)!.push(run);
        console.log(
          `  rep ${rep + 1}/${settings.reps}  ${target.name.padEnd(WIDTH)} ${fmtInt(run.requestsPerSecond).padStart(7)} req/s  ` +
            `${target.proxy ? `proxy ${fmtFixed(run.proxyCpuPerRequest, 1).padStart(6)} µs CPU/req (${fmtInt(run.proxyCpuPercent)} %)` : 'no proxy'}  upstream ${fmtFixed(run.upstreamCpuPerRequest, 1)} µs CPU/req  ` +
            `autocannon ${fmtInt(run.loadgenCpuPercent)} %  other ${fmtInt(run.otherCpuPercent)} %  latency p50 ${fmtFixed(run.p50)} ms p99 ${fmtFixed(run.p99)} ms  ` +
            `non-2xx ${run.non2xx}  errors ${run.errors}${run.non2xx ? `  (${run.statusCodes})` : ''}`,
        );
      }
      for (const target of order) {
        const run = await measureTarget(target, server, headers, 1, latency);
        single.get(target.name)!.push(run);
        console.log(
          `  rep ${rep + 1}/${settings.reps}  ${target.name.padEnd(WIDTH)} 1 connection: ${fmtInt(run.requestsPerSecond).padStart(6)} req/s  ` +
            `latency mean ${fmtFixed(run.mean, 3)} ms p50 ${fmtFixed(run.p50, 3)} ms p99 ${fmtFixed(run.p99, 3)} ms  ` +
            `${target.proxy ? `proxy ${fmtFixed(run.proxyCpuPerRequest, 0)} µs CPU/req  ` : ''}upstream ${fmtFixed(run.upstreamCpuPerRequest, 0)} µs CPU/req  non-2xx ${run.non2xx}  errors ${run.errors}`,
        );
      }
    }
    if (settings.probe) {
      console.log(`  paired one-connection probe: ${settings.probe.rounds} rounds × ${settings.probe.calls} calls per target`);
      probed = await pairedProbe(
        targets.map((t) => ({ name: t.name, url: t.url, headers: t.headers ? { ...headers, ...t.headers } : headers, pid: t.proxy?.pid, upstreamPid: server.pid })),
        body,
        settings.probe,
      );
    }
  } finally {
    await Promise.all(children.map((child) => stopServer(child.process)));
  }
  return report(settings, upstream, loaded, single, probed);
}

/** The probe's lines: each target's median latency and CPU per call, and their paired differences from the bare proxy's (with a ~95 % interval of the latency's). */
function probeLines(settings: GatewaySettings, probed: ProbeResult[]): string[] {
  const bare = probed.find((p) => p.name === BARE)!;
  const median = (values: number[]) => summarize(values).median;
  // Each target's latency against the bare proxy's, round by round: the median and its interval.
  const latencyDelta = (p: ProbeResult) => {
    const differences = pairedDifferences(p.latency, bare.latency);
    return { median: median(differences), interval: medianInterval(differences) };
  };
  const gateway = latencyDelta(probed.find((p) => p.name === GATEWAY)!);
  const verdict = gateway.median > GOAL_ADDED_LATENCY_OVER_BARE_MS ? 'NOT met' : 'met';
  const decided = !gateway.interval || gateway.interval.high <= GOAL_ADDED_LATENCY_OVER_BARE_MS || gateway.interval.low > GOAL_ADDED_LATENCY_OVER_BARE_MS;
  return [
    `paired one-connection probe (${settings.probe!.rounds} rounds × ${settings.probe!.calls} calls per target, order shuffled per round; medians over rounds; Δ: of the per-round differences from ${BARE}):`,
    ...probed.map((p) => {
      const cpu = p.cpu.some((v) => !Number.isNaN(v)) ? `  CPU ${fmtFixed(median(p.cpu), 0)} µs/call` : '';
      const cpuDelta = cpu && p !== bare ? ` (Δ ${fmtSigned(medianPairedDifference(p.cpu, bare.cpu), 0)} µs)` : '';
      const { median: delta, interval } = latencyDelta(p);
      const latency = p === bare ? '' : ` (Δ ${fmtSigned(delta, 3)} ms${interval ? `, 95 % CI ${fmtSigned(interval.low, 3)} … ${fmtSigned(interval.high, 3)}` : ''})`;
      const upstream = `  upstream CPU ${fmtFixed(median(p.upstreamCpu), 0)} µs/call${p === bare ? '' : ` (Δ ${fmtSigned(medianPairedDifference(p.upstreamCpu, bare.upstreamCpu), 0)} µs)`}`;
      return `  ${p.name.padEnd(WIDTH)} latency ${fmtFixed(median(p.latency), 3)} ms${latency}${cpu}${cpuDelta}${upstream}`;
    }),
    `  goal: ${GATEWAY}'s latency Δ ≤ +${GOAL_ADDED_LATENCY_OVER_BARE_MS} ms: ${verdict}${decided ? '' : ' (its 95 % interval spans the goal: more rounds would decide)'}`,
  ];
}

const fmtSigned = (n: number, digits: number) => `${n < 0 ? '−' : '+'}${fmtFixed(Math.abs(n), digits)}`;

function report(settings: GatewaySettings, upstream: GatewayUpstream, loaded: Map<string, Run[]>, single: Map<string, Run[]>, probed?: ProbeResult[]): string {
  const direct = single.get(DIRECT)!;
  // Added latency per repetition (paired with direct's run of the same repetition), then the median.
  const added = (name: string) => summarize(single.get(name)!.map((run, i) => run.mean - direct[i]!.mean));
  const summaries = new Map(
    [...loaded].map(([name, runs]) => [
      name,
      {
        rps: summarize(runs.map((r) => r.requestsPerSecond)),
        p50: summarize(runs.map((r) => r.p50)),
        p99: summarize(runs.map((r) => r.p99)),
        proxyCpu: summarize(runs.map((r) => r.proxyCpuPerRequest)),
        proxyCpuPercent: summarize(runs.map((r) => r.proxyCpuPercent)),
        upstreamCpu: summarize(runs.map((r) => r.upstreamCpuPerRequest)),
        otherCpu: summarize(runs.map((r) => r.otherCpuPercent)),
        single: summarize(single.get(name)!.map((r) => r.mean)),
        singleCpu: summarize(single.get(name)!.map((r) => r.proxyCpuPerRequest)),
        added: added(name),
        failures: sum(runs, 'non2xx') + sum(runs, 'errors') + sum(single.get(name)!, 'non2xx') + sum(single.get(name)!, 'errors'),
      },
    ]),
  );
  const s = (name: string) => summaries.get(name)!;
  const ms = (n: number) => fmtFixed(n, 2);
  const rows = [...summaries].map(([name, x]) => [
    name,
    fmtSummary(x.rps),
    ms(x.p50.median),
    ms(x.p99.median),
    name === DIRECT ? '—' : fmtSummary(x.proxyCpu, (n) => fmtFixed(n, 0)),
    name === DIRECT ? '—' : fmtInt(x.proxyCpuPercent.median),
    fmtFixed(x.upstreamCpu.median, 0),
    fmtInt(x.otherCpu.max),
    fmtFixed(x.single.median, 3),
    name === DIRECT ? '—' : `+${fmtFixed(x.added.median, 3)}`,
    String(x.failures),
  ]);
  const throughput = (a: string, b: string) => s(a).rps.median / s(b).rps.median;
  const ofBare = throughput(GATEWAY, BARE);
  const addedGateway = s(GATEWAY).added.median;
  const addedBare = s(BARE).added.median;
  const cpuOfBare = (name: string) => s(name).proxyCpu.median / s(BARE).proxyCpu.median;
  // At one connection each request finds the proxy asleep and its caches cold: its CPU per request there is what the added latency follows.
  const singleCpuOfBare = (name: string) => s(name).singleCpu.median / s(BARE).singleCpu.median;
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const compared = [...summaries.keys()].filter((name) => name.startsWith(`${GATEWAY}:`));
  const lines = [
    `Gateway, MCP tools/call — ${DESCRIPTION[upstream]}`,
    `(${settings.connections} connections, ${settings.duration} s after ${settings.warmup} s warm-up, ${settings.reps} rep(s); min / median / max; latencies are medians over repetitions)`,
    '',
    table(
      ['target', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU µs/req', 'proxy CPU %', 'upstream CPU µs/req', 'other load % (max)', '1-conn. mean ms', 'added ms', 'failed'],
      rows,
    ),
    '',
    `${GATEWAY} / ${BARE} (medians): proxy CPU per request ${fmtFixed(cpuOfBare(GATEWAY))}× (goal ≤ ${GOAL_CPU_OF_BARE}×: ${verdict(cpuOfBare(GATEWAY) <= GOAL_CPU_OF_BARE)}), ` +
      `throughput ${fmtFixed(ofBare)}× (goal ≥ ${GOAL_THROUGHPUT_OF_BARE}×: ${verdict(ofBare >= GOAL_THROUGHPUT_OF_BARE)})`,
    `${GATEWAY} / ${DIRECT}: throughput ${fmtFixed(throughput(GATEWAY, DIRECT))}×;  ${BARE} / ${DIRECT}: ${fmtFixed(throughput(BARE, DIRECT))}×`,
    `added latency at 1 connection (mean, over direct): ${GATEWAY} +${fmtFixed(addedGateway, 3)} ms, ${BARE} +${fmtFixed(addedBare, 3)} ms ` +
      `(goal ≤ the bare proxy's + ${GOAL_ADDED_LATENCY_OVER_BARE_MS} ms: ${verdict(addedGateway <= addedBare + GOAL_ADDED_LATENCY_OVER_BARE_MS)})`,
    `proxy CPU per request at 1 connection (medians): ${GATEWAY} ${fmtFixed(s(GATEWAY).singleCpu.median, 0)} µs, ${BARE} ${fmtFixed(s(BARE).singleCpu.median, 0)} µs (${fmtFixed(singleCpuOfBare(GATEWAY))}×)`,
    ...compared.map(
      (name) =>
        `${name}: proxy CPU per request ${fmtFixed(cpuOfBare(name))}× the bare proxy's, ${fmtFixed(s(GATEWAY).proxyCpu.median / s(name).proxyCpu.median)}× (this checkout / it); ` +
        `added latency +${fmtFixed(s(name).added.median, 3)} ms; at 1 connection ${fmtFixed(singleCpuOfBare(name))}× the bare proxy's CPU per request`,
    ),
    ...(summaries.has(FLOOR)
      ? [
          `${FLOOR} (a lower bound on a gateway fast path): proxy CPU per request ${fmtFixed(cpuOfBare(FLOOR))}× the bare proxy's; added latency +${fmtFixed(s(FLOOR).added.median, 3)} ms; ` +
            `at 1 connection ${fmtFixed(singleCpuOfBare(FLOOR))}× the bare proxy's CPU per request`,
        ]
      : []),
    ...(probed ? probeLines(settings, probed) : []),
    '',
    'The gateway checks an ES256 at+jwt (local JWKS), one tool rule (scope + CEL), one in-memory rate limit (never reached) and writes',
    'a JSONL audit event per call. Every request carries the same token, so after the first one the verified-token cache answers:',
    'the signature is not verified per request. The issuer is in the gateway process (its keys are fetched at start, idle under load).',
    'CPU % is of one core; "other load" is machine CPU used by neither the proxy, the upstream nor autocannon.',
    `The gateway's code: ${process.env.BENCH_GATEWAY_BUILD === 'dist' ? 'dist/ (compiled by npm run build, as shipped)' : 'src/ through tsx (BENCH_GATEWAY_BUILD=dist: the compiled dist/)'}.`,
  ];
  if ([...summaries.values()].some((x) => x.failures > 0)) lines.push('WARNING: some responses were not 2xx or failed: see the per-run lines above.');
  return lines.join('\n');
}

export async function gatewaySection(root: string, settings: GatewaySettings, upstreams: readonly GatewayUpstream[]): Promise<string> {
  const reports: string[] = [];
  for (const upstream of upstreams) reports.push(await upstreamSection(root, settings, upstream));
  return reports.join('\n\n');
}

/** `--profile-target=gateway`: a CPU profile of the gateway under load in front of the trivial upstream. */
export async function profileGateway(root: string, settings: GatewaySettings): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-prof-gateway-'));
  console.log(`\n== CPU profile of the gateway under load (trivial upstream; ${settings.warmup} s warm-up + ${settings.duration} s) ==`);
  const sourceMaps = join(dir, 'sourcemaps.json');
  const server = await start(root, 'upstream:trivial', 'bench/gateway-upstream.ts', { BENCH_UPSTREAM: 'trivial' });
  try {
    const gateway = await start(root, 'gateway', 'bench/gateway-server.ts', { BENCH_UPSTREAM_URL: server.url, BENCH_SOURCEMAPS_OUT: sourceMaps }, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
    const headers = { ...MCP_HEADERS, ...gateway.headers };
    const target: Target = { name: GATEWAY, url: gateway.tokenEndpoint, proxy: gateway };
    let run: Run;
    try {
      await verify(target, headers);
      run = await measureTarget(target, server, headers, settings.connections, settings);
      console.log(`  ${fmtInt(run.requestsPerSecond)} req/s with the profiler on, ${fmtFixed(run.proxyCpuPerRequest, 1)} µs CPU/req, non-2xx ${run.non2xx}`);
    } finally {
      await stopServer(gateway.process, 15_000);
    }
    // One file per thread; thread 0 is the main thread (see run.ts's profile section).
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    const file = files.find((f) => f.includes(`.${gateway.pid}.0.`)) ?? files[0];
    if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
    return analyzeProfile(join(dir, file), root, { sourceMaps, window: run.window });
  } finally {
    await stopServer(server.process);
  }
}
