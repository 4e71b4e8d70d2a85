/**
 * The start-up section of `npm run bench` (`--only=startup`): how long a person waits for the
 * `mandate` command. Wall time from spawn, medians of five runs after one unmeasured run (which
 * warms the file cache, and the demo's data dir: keys, database, secrets):
 *
 *   mandate --help               to exit
 *   mandate agent whoami         to exit, with an empty HOME (not signed in: it says so, exit 7),
 *                                with no server to ask, then beside the running demo; then signed
 *                                in (the README's sample-agent sign-in, done over HTTP)
 *   mandate demo (`npm start`)   to the "Mandate demo is running" line, then stopped with SIGINT
 *
 * Each runs `node bin/mandate.js`, as `npm start` and an installed `mandate` do, on the current
 * build (rebuilt first when src/ is newer, else bin/mandate.js would run the sources through tsx).
 * `npm start` itself adds npm's own start-up on top. The demo runs on its documented ports when
 * they are free, else moved by `--port-offset` to free ones (a developer's own demo keeps running);
 * a demo without that option ignores it, and its runs are then reported as not measured.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmtInt, summarize, table } from './lib/stats.ts';
import { FormBrowser } from '../test/helpers/browser-driver.ts';

const RUNS = 5;
/** The demo's ports (src/cli/demo.ts): authorization server, gateway, banking, Todo API, Todo MCP, metrics. */
const DEMO_PORTS = [9000, 8080, 8000, 8001, 8787, 9464];
const READY = /Mandate demo is running \(ready in (\d+) ms/;

interface Timed {
  ms: number;
  /** The demo's own "ready in" figure. */
  reported?: number;
}

function buildIsCurrent(root: string): boolean {
  const stamp = join(root, 'dist/.build-stamp');
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  return ['src', 'examples'].every((dir) =>
    readdirSync(join(root, dir), { withFileTypes: true, recursive: true }).every((entry) => !entry.isFile() || statSync(join(entry.parentPath, entry.name)).mtimeMs <= built),
  );
}

/** Runs `mandate <args>` to its exit; the time from spawn to exit. */
function timeCommand(root: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<Timed & { code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(root, 'bin/mandate.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - started, code, out });
    });
  });
}

interface RunningDemo {
  /** Resolves when the ready line is printed: the time from spawn, and the demo's own figure. */
  ready: Promise<Timed>;
  stop(): Promise<void>;
}

/** Starts `mandate demo` in `cwd` (its data dir is `cwd`/.mandate). */
function startDemo(root: string, cwd: string, offset: number): RunningDemo {
  const started = performance.now();
  const args = offset === 0 ? [] : ['--port-offset', String(offset)];
  const child = spawn(process.execPath, [join(root, 'bin/mandate.js'), 'demo', ...args], { cwd, env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const ready = new Promise<Timed>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d) => {
      out += d;
      const match = READY.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ ms: performance.now() - started, reported: Number(match[1]) });
      }
    });
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code ?? signal}) before it was ready:\n${out.slice(-3000)}`));
    });
  });
  return {
    ready,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

/** The demo from spawn to ready, then stopped (Ctrl-C) before the next run. */
async function timeDemo(root: string, cwd: string, offset: number): Promise<Timed> {
  const demo = startDemo(root, cwd, offset);
  try {
    return await demo.ready;
  } finally {
    await demo.stop();
  }
}

/**
 * `mandate agent login` as the README runs it, the person's part (sign in as demo / demo, agree,
 * allow) done over HTTP by the tests' form driver, the redirect delivered to the CLI's loopback port.
 */
async function signIn(root: string, cwd: string, env: NodeJS.ProcessEnv, mcpUrl: string, issuer: string): Promise<void> {
  const child = spawn(process.execPath, [join(root, 'bin/mandate.js'), 'agent', 'login', '--scope', 'banking:read', '--no-browser', '--mcp-url', mcpUrl], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (d) => {
        err += d;
        const found = /https?:\/\/\S+\/authorize\?\S+/.exec(err);
        if (found) resolve(found[0]);
      });
      void exited.then((code) => reject(new Error(`mandate agent login exited ${code} before printing a sign-in URL:\n${err}`)));
    });
    const redirect = await new FormBrowser(issuer).authorize(url);
    await fetch(redirect);
    const code = await exited;
    if (code !== 0) throw new Error(`mandate agent login exited ${code}:\n${err}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** A loopback port nothing listens on (taken, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function medianOf(label: string, once: () => Promise<Timed>): Promise<Timed[]> {
  await once();
  const runs: Timed[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once());
  console.log(`  ${label.padEnd(28)} ${runs.map((r) => `${fmtInt(r.ms)} ms`).join('  ')}`);
  return runs;
}

export async function startupSection(root: string): Promise<string> {
  console.log(`\n== Start-up: wall time from spawn, ${RUNS} runs after one unmeasured run ==`);
  if (!buildIsCurrent(root)) {
    console.log('  src/ is newer than dist/: building first (npm run build)');
    if (spawnSync(process.execPath, [join(root, 'scripts/build.mjs')], { stdio: 'inherit' }).status !== 0) throw new Error('npm run build failed');
  }
  const dir = mkdtempSync(join(tmpdir(), 'mandate-bench-startup-'));
  const home = join(dir, 'home');
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, USERPROFILE: home };
  for (const name of ['AGENT_CLIENT_ID', 'AGENT_SECRET', 'MANDATE_AGENT_HOME', 'XDG_CONFIG_HOME']) delete env[name];
  const rows: string[][] = [];
  const notes: string[] = [];
  const row = (what: string, runs: Timed[], note: string) => {
    const s = summarize(runs.map((r) => r.ms));
    rows.push([what, fmtInt(s.median), `${fmtInt(s.min)}–${fmtInt(s.max)}`]);
    notes.push(`${what}: ${note}`);
  };
  try {
    const help = await medianOf('mandate --help', async () => {
      const run = await timeCommand(root, ['--help'], env, dir);
      if (run.code !== 0 || !/Usage:/.test(run.out)) throw new Error(`mandate --help exited ${run.code}:\n${run.out}`);
      return run;
    });
    row('mandate --help', help, 'to exit');
    const whoami = async (label: string, mcpUrl: string, note: string) => {
      let said = '';
      const runs = await medianOf(label, async () => {
        const run = await timeCommand(root, ['agent', 'whoami', '--mcp-url', mcpUrl], env, dir);
        said = run.out.trim().split('\n')[0] ?? '';
        return run;
      });
      row(label, runs, `to exit, with an empty HOME (not signed in), ${note}; it said "${said}"`);
    };
    await whoami('mandate agent whoami', `http://127.0.0.1:${await closedPort()}/mcp`, 'no server to ask');

    let offset: number | undefined;
    for (const candidate of [0, 20_000, 21_000, 22_000]) {
      if ((await Promise.all(DEMO_PORTS.map((port) => portFree(port + candidate)))).every(Boolean)) {
        offset = candidate;
        break;
      }
    }
    const where = offset ? ` (--port-offset ${offset}: the documented ports are taken)` : '';
    const demo = offset === undefined ? undefined : await medianOf('mandate demo (npm start)', () => timeDemo(root, dir, offset)).catch((error: Error) => error);
    if (offset === undefined || demo === undefined || demo instanceof Error) {
      rows.push(['mandate demo (npm start)', 'n/a', '']);
      const why = demo instanceof Error ? demo.message.split('\n').slice(0, 3).join(' ') : 'no free set of ports';
      notes.push(`mandate demo (npm start): not measured${where}: ${why}`);
    } else {
      const reported = summarize(demo.map((r) => r.reported!));
      row('mandate demo (npm start)', demo, `to its ready line, on a warm data dir${where}; the line itself says "ready in ${fmtInt(reported.median)} ms" (median)`);
      // whoami as a person runs it beside `npm start`, not signed in (it asks the gateway which
      // authorization server to use), then signed in as the README's agent walkthrough does it.
      const running = startDemo(root, dir, offset);
      try {
        await running.ready;
        const mcpUrl = `http://localhost:${8080 + offset}/mcp`;
        await whoami('mandate agent whoami (demo)', mcpUrl, 'beside the running demo');
        const agentEnv = { ...env, AGENT_CLIENT_ID: 'sample-agent', AGENT_SECRET: readFileSync(join(dir, '.mandate/secrets/sample-agent.secret'), 'utf8').trim() };
        await signIn(root, dir, agentEnv, mcpUrl, `http://localhost:${9000 + offset}`);
        let said = '';
        const runs = await medianOf('mandate agent whoami (signed in)', async () => {
          const run = await timeCommand(root, ['agent', 'whoami', '--mcp-url', mcpUrl], agentEnv, dir);
          if (run.code !== 0) throw new Error(`whoami exited ${run.code}: ${run.out}`);
          said = String((JSON.parse(run.out) as { user?: string }).user);
          return run;
        });
        row('mandate agent whoami (signed in)', runs, `to exit, signed in as the sample agent for demo (demo / demo, over HTTP), beside the running demo; it named "${said}"`);
      } finally {
        await running.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return [
    `Start-up (Node ${process.version}; wall ms from spawn of \`node bin/mandate.js …\`, median of ${RUNS} after one unmeasured run)`,
    '',
    table(['command', 'median ms', 'min–max'], rows),
    '',
    ...notes,
    "Aims: --help and agent whoami ≤ 300 ms, npm start ready ≤ 1.5 s on a warm data dir. `npm start` adds npm's own start-up.",
  ].join('\n');
}
