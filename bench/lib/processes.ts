/**
 * Server children for the benchmark: started with `node --import tsx <script>`, so the child's pid
 * is the Node process itself and its CPU time can be read from /proc/<pid>/stat. Every child is
 * stopped when the benchmark ends, fails or is interrupted.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { READY_PREFIX } from './child.ts';

export interface ServerChild {
  name: string;
  pid: number;
  url: string;
  /** The URL the load goes to: the token endpoint, or the MCP endpoint in the gateway scenario. */
  tokenEndpoint: string;
  /** The request body this server is loaded with, when it is not the client_credentials one. */
  body?: string;
  /** Request headers the child asks the load to send (the gateway's bearer token). */
  headers?: Record<string, string>;
  process: ChildProcess;
}

const children = new Set<ChildProcess>();

/** Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK`, almost always 100). */
export const CLK_TCK = (() => {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
})();

/** utime + stime (fields 14 and 15 of /proc/<pid>/stat, all threads) in microseconds. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 (comm) is parenthesised and may contain spaces: split after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc/${pid}/stat`);
  return ((utime + stime) / CLK_TCK) * 1e6;
}

/** Busy CPU time of the whole machine, all cores (first line of /proc/stat), in microseconds. */
export function machineBusyMicros(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  return ((user! + nice! + system! + irq! + softirq! + steal!) / CLK_TCK) * 1e6;
}

export function startServer(
  name: string,
  script: string,
  options: { cwd: string; env: Record<string, string>; execArgv?: string[]; timeoutMs?: number },
): Promise<ServerChild> {
  const child = spawn(process.execPath, [...(options.execArgv ?? []), '--import', 'tsx', script], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, BENCH_WATCH_STDIN: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const prefix = (line: string) => `  [${name}] ${line}`;
  createInterface({ input: child.stderr! }).on('line', (line) => {
    // oidc-provider warns that Node 20 is not its supported runtime and that its in-memory
    // adapter is for development: both expected here.
    if (/oidc-provider WARNING: (Unsupported runtime|a quick start development-only in-memory adapter)/.test(line)) return;
    console.error(prefix(line));
  });

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${name} did not start within ${options.timeoutMs ?? 30_000} ms`));
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 30_000);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith(READY_PREFIX)) return void console.log(prefix(line));
      clearTimeout(timer);
      const info = JSON.parse(line.slice(READY_PREFIX.length)) as { url: string; tokenEndpoint: string; pid: number; body?: string; headers?: Record<string, string> };
      if (info.pid !== child.pid) console.error(prefix(`warning: reported pid ${info.pid}, spawned ${child.pid}`));
      resolve({ name, pid: child.pid!, url: info.url, tokenEndpoint: info.tokenEndpoint, body: info.body, headers: info.headers, process: child });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before it was ready (code ${code}, signal ${signal})`));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export function stopServer(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function stopAllServers(): Promise<void> {
  await Promise.all([...children].map((child) => stopServer(child)));
}

/** Last resort when the parent exits: no child outlives the benchmark. */
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
