/**
 * A paired one-connection probe: rounds in which every target, in a new random order, answers
 * `calls` sequential requests over one keep-alive connection of its own. Per round and target: the
 * mean latency and the CPU its process used per call (every thread's, from /proc/<pid>/task/*
 * /schedstat, in ns — not the 10 ms ticks of /proc/<pid>/stat). A difference is taken per round
 * against the reference target, then the median over the rounds: a slow minute of the machine
 * weighs on both sides of each difference, where separate runs of the targets would each catch
 * a different one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { assertLoopback } from './load.ts';
import { summarize } from './stats.ts';

export interface ProbeTarget {
  name: string;
  url: string;
  headers: Record<string, string>;
  /** The process whose CPU is counted (none for a target without a proxy). */
  pid?: number;
  /** The upstream's process, whose CPU per call is counted too (the same process for every target). */
  upstreamPid?: number;
}

export interface ProbeResult {
  name: string;
  /** Mean latency per call, ms, one per round. */
  latency: number[];
  /** CPU per call of the target's process, µs, one per round (NaN without a pid). */
  cpu: number[];
  /** CPU per call of the upstream's process, µs, one per round (NaN without an upstream pid). */
  upstreamCpu: number[];
}

/** CPU time of every thread of `pid`, µs. */
export function threadsCpuMicros(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1000;
}

export async function pairedProbe(targets: ProbeTarget[], body: string, options: { rounds: number; calls: number; warmupCalls?: number }): Promise<ProbeResult[]> {
  const clients = targets.map((target) => {
    assertLoopback(target.url);
    const url = new URL(target.url);
    return { target, pool: new Pool(url.origin, { connections: 1 }), path: `${url.pathname}${url.search}`, result: { name: target.name, latency: [] as number[], cpu: [] as number[], upstreamCpu: [] as number[] } };
  });
  const call = async (client: (typeof clients)[number]) => {
    const res = await client.pool.request({ path: client.path, method: 'POST', headers: client.target.headers, body });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${client.target.name}: answered ${res.statusCode} in the probe`);
  };
  try {
    for (const client of clients) for (let i = 0; i < (options.warmupCalls ?? 200); i++) await call(client);
    for (let round = 0; round < options.rounds; round++) {
      const order = [...clients];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (const client of order) {
        const { pid, upstreamPid } = client.target;
        const cpuBefore = pid === undefined ? 0 : threadsCpuMicros(pid);
        const upstreamBefore = upstreamPid === undefined ? 0 : threadsCpuMicros(upstreamPid);
        const started = performance.now();
        for (let i = 0; i < options.calls; i++) await call(client);
        client.result.latency.push((performance.now() - started) / options.calls);
        client.result.cpu.push(pid === undefined ? NaN : (threadsCpuMicros(pid) - cpuBefore) / options.calls);
        client.result.upstreamCpu.push(upstreamPid === undefined ? NaN : (threadsCpuMicros(upstreamPid) - upstreamBefore) / options.calls);
      }
    }
  } finally {
    await Promise.all(clients.map((client) => client.pool.close()));
  }
  return clients.map((client) => client.result);
}

/** The median over rounds of `of`'s figure minus `reference`'s in the same round. */
export function medianPairedDifference(of: number[], reference: number[]): number {
  return summarize(pairedDifferences(of, reference)).median;
}

/**
 * A distribution-free ~95 % confidence interval for the median of `values`: the order statistics
 * of ranks ⌊n/2 − 1.96·√n/2⌋ and ⌈1 + n/2 + 1.96·√n/2⌉ (1-based; the binomial count of values
 * below the median, in its normal approximation, rounded outwards). Undefined below 6 values,
 * where it would span them all.
 */
export function medianInterval(values: number[]): { low: number; high: number } | undefined {
  const n = values.length;
  if (n < 6) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const half = (1.96 * Math.sqrt(n)) / 2;
  const low = Math.max(1, Math.floor(n / 2 - half));
  const high = Math.min(n, Math.ceil(1 + n / 2 + half));
  return { low: sorted[low - 1]!, high: sorted[high - 1]! };
}

/** The paired differences of `of` from `reference`, round by round. */
export function pairedDifferences(of: number[], reference: number[]): number[] {
  return of.map((value, i) => value - reference[i]!);
}
