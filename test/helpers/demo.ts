import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer } from 'node:net';
import { DEMO_PORTS } from '../../src/cli/demo.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

/** Free on both loopback families: `localhost` may reach either, and a stale server on one would answer. */
export async function portFree(port: number): Promise<boolean> {
  const free = (host: string) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRNOTAVAIL' || error.code === 'EAFNOSUPPORT'));
      server.listen(port, host, () => server.close(() => resolve(true)));
    });
  return (await free('127.0.0.1')) && (await free('::1'));
}

/**
 * A port offset under which every demo port (and `extraPorts`) is free, so a test's demo runs
 * beside a developer's own `npm start` and beside other test files.
 */
export async function freeDemoOffset(extraPorts: number[] = []): Promise<number> {
  const ports = [...Object.values(DEMO_PORTS), ...extraPorts];
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the ephemeral range (32768+, Linux), where other tests' free ports come from.
    const offset = 10_000 + 10 * Math.floor(Math.random() * 1_300);
    if ((await Promise.all(ports.map((port) => portFree(port + offset)))).every(Boolean)) return offset;
  }
  throw new Error('no free demo port offset found in 50 attempts');
}

export interface RunningDemo {
  child: ChildProcessWithoutNullStreams;
  exited: Promise<number | null>;
  out(): string;
  err(): string;
  /** Kills the demo if it still runs. */
  kill(): void;
}

/** `mandate demo --port-offset … --data-dir …` as a child process; resolves once it says it is ready. */
export async function startDemo(options: { cwd: string; portOffset: number; dataDir: string; timeoutMs?: number; args?: string[] }): Promise<RunningDemo> {
  const child = spawn(process.execPath, [BIN, 'demo', '--port-offset', String(options.portOffset), '--data-dir', options.dataDir, ...(options.args ?? [])], {
    cwd: options.cwd,
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const demo = {
    child,
    exited,
    out: () => out,
    err: () => err,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  while (!out.includes('Press Ctrl-C') && child.exitCode === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  if (!out.includes('Press Ctrl-C')) {
    demo.kill();
    throw new Error(`the demo did not start (exit ${child.exitCode}):\n${err}\n${out}`);
  }
  return demo;
}
