/**
 * One measured load, shared by every HTTP scenario of bench/run.ts: `autocannon` against one
 * loopback URL (a warm-up, then the measured run), with the CPU time of the watched processes
 * read from /proc before and after, the load generator's own CPU, and the machine's, so what is
 * left is "other load". Latencies are kept per response at full precision (autocannon's own
 * histogram truncates to whole milliseconds, too coarse at one connection).
 */
import autocannon from 'autocannon';
import type { Result } from 'autocannon';
import { cpuMicros, machineBusyMicros } from './processes.ts';

export interface LoadRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
  connections: number;
}

export interface LoadTiming {
  warmup: number;
  duration: number;
}

export interface Measurement {
  result: Result;
  /** 2xx responses per measured second. */
  requestsPerSecond: number;
  ok: number;
  /** CPU µs each watched pid used during the measured run, in the order given. */
  cpu: number[];
  wallMicros: number;
  /** This process's CPU (autocannon runs in it). */
  loadgenMicros: number;
  /** Machine CPU used by neither the watched processes nor autocannon (other tenants, idle peers). */
  otherMicros: number;
  /** Of 2xx responses, in ms: mean, median, 99th percentile. */
  latency: { mean: number; p50: number; p99: number };
  non2xx: number;
  errors: number;
  statusCodes: string;
  /** The measured interval in µs on the monotonic clock, to cut a CPU profile to it. */
  window: { start: number; end: number };
}

let current: ReturnType<typeof autocannon> | undefined;

export function assertLoopback(url: string): void {
  if (new URL(url).hostname !== '127.0.0.1') throw new Error(`refusing to load ${url}: the benchmark stays on 127.0.0.1`);
}

/** Stops the load in progress, if any (on shutdown). */
export function stopLoad(): void {
  current?.stop();
}

async function load(request: LoadRequest, seconds: number, latencies?: number[]): Promise<Result> {
  assertLoopback(request.url);
  const { url, method, headers, body, connections } = request;
  current = autocannon({ url, method, headers, body, connections, pipelining: 1, duration: seconds, timeout: 10 });
  if (latencies) current.on('response', (_client, statusCode, _bytes, responseTime) => void (statusCode < 300 && statusCode >= 200 && latencies.push(responseTime)));
  try {
    return await current;
  } finally {
    current = undefined;
  }
}

/** The p-th percentile (0–100) of ascending values, nearest rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** A warm-up (its failures reported under `label`), then the measured run with `pids` watched. */
export async function measureLoad(request: LoadRequest, timing: LoadTiming, pids: number[], label: string): Promise<Measurement> {
  const warm = await load(request, timing.warmup);
  if (warm.non2xx > 0 || warm.errors > 0) console.log(`  warning: ${label} warm-up had ${warm.non2xx} non-2xx and ${warm.errors} errors`);
  const latencies: number[] = [];
  const cpu0 = pids.map(cpuMicros);
  const machine0 = machineBusyMicros();
  const self0 = process.cpuUsage();
  const start = Number(process.hrtime.bigint() / 1000n);
  const t0 = performance.now();
  const result = await load(request, timing.duration, latencies);
  const wallMicros = (performance.now() - t0) * 1000;
  const cpu = pids.map((pid, i) => cpuMicros(pid) - cpu0[i]!);
  const self = process.cpuUsage(self0);
  const machine = machineBusyMicros() - machine0;
  const loadgenMicros = self.user + self.system;
  const sorted = Float64Array.from(latencies).sort();
  const ok = result['2xx'];
  return {
    result,
    requestsPerSecond: ok / result.duration,
    ok,
    cpu,
    wallMicros,
    loadgenMicros,
    otherMicros: Math.max(0, machine - loadgenMicros - cpu.reduce((a, b) => a + b, 0)),
    latency: { mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    window: { start, end: Number(process.hrtime.bigint() / 1000n) },
    statusCodes: Object.entries(result.statusCodeStats)
      .map(([code, { count }]) => `${code}×${count}`)
      .join(' '),
  };
}
