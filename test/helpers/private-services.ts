import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/lib/child.ts';

/**
 * PostgreSQL and Redis servers of a test's own, on free loopback ports in temporary directories,
 * so that a fault test can stop, kill and restart them without touching the shared ones. Each is
 * removed on close() and, should the test process die first, on its exit.
 */

const run = promisify(execFile);

/** Waits until `check` resolves true, polling; throws after `timeoutMs`. Returns the time it took. */
export async function until(check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 100): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - start;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

const cleanups = new Set<() => void>();
process.on('exit', () => {
  for (const cleanup of cleanups) cleanup();
});

function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find((bin) => existsSync(join(bin, 'pg_ctl')));
}

export const postgresAvailable = () => postgresBin() !== undefined;
export const redisAvailable = () => spawnSync('redis-server', ['--version']).status === 0;

export interface PrivatePostgres {
  url: string;
  port: number;
  /** `fast` disconnects clients cleanly; `immediate` is a crash (no shutdown checkpoint). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * initdb + pg_ctl on a free port. PostgreSQL refuses to run as root: as root the data directory is
 * given to the `postgres` user and every command runs as that user.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'mandate-pg-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const ids = spawnSync('id', ['-u', 'postgres']).stdout.toString().trim();
    const gid = spawnSync('id', ['-g', 'postgres']).stdout.toString().trim();
    chownSync(dir, Number(ids), Number(gid));
  }
  const command = (tool: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args]);
  const exec = (tool: string, args: string[]) => run(...command(tool, args), { timeout: 60_000 });
  const port = await freePort();
  const ctl = (args: string[]) => exec('pg_ctl', ['-D', data, ...args]);
  const stopNow = () => {
    const [cmd, args] = command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    spawnSync(cmd, args, { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(stopNow);
  const start = async () => {
    // fsync off: the data is thrown away; a crash of the machine is not what these tests are about.
    await ctl(['-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`, '-l', join(dir, 'log'), '-w', '-t', '30', 'start']);
  };
  try {
    await exec('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
    await start();
  } catch (error) {
    stopNow();
    cleanups.delete(stopNow);
    throw error;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop(mode = 'fast') {
      await ctl(['-m', mode, '-w', '-t', '30', 'stop']);
    },
    start,
    async close() {
      await ctl(['-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      cleanups.delete(stopNow);
    },
  };
}

export interface PrivateRedis {
  url: string;
  /** SIGKILL: connections drop with no goodbye. */
  kill(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** redis-server on a free port, with no persistence, so a restart starts empty. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const killNow = () => child?.kill('SIGKILL');
  cleanups.add(killNow);
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await until(() => portOpen(port), 10_000, 'redis-server start');
  };
  const kill = async () => {
    const dying = child;
    // A process killed by a signal keeps exitCode null: it has exited all the same.
    if (!dying || dying.exitCode !== null || dying.signalCode !== null) return;
    const exited = new Promise((resolve) => dying.once('exit', resolve));
    dying.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    kill,
    start,
    async close() {
      await kill();
      cleanups.delete(killNow);
    },
  };
}
