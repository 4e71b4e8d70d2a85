/**
 * The start-up section of `npm run bench` (`--only=startup`): how long a person waits for the
 * `mandate` command. Wall time from spawn, medians of five runs after one unmeasured run (which
 * warms the file cache, and the demo's data dir: keys, database, secrets):
 *
 *   mandate --help               to exit
 *   mandate agent whoami         to exit, with an empty HOME (not signed in: it says so, exit 7)
 *   mandate demo (`npm start`)   to the "Mandate demo is running" line, then stopped with SIGINT
 *
 * Each runs `node bin/mandate.js`, as `npm start` and an installed `mandate` do, on the current
 * build (rebuilt first when src/ is newer, else bin/mandate.js would run the sources through tsx).
 * `npm start` itself adds npm's own start-up on top. The demo binds its fixed ports: its runs are
 * skipped, with a reason, when one of them is taken (a demo already running).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmtInt, summarize, table } from './lib/stats.ts';

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

/** Starts the demo; the time from spawn to its ready line; then stops it and waits for the exit. */
function timeDemo(root: string, cwd: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(root, 'bin/mandate.js'), 'demo'], { cwd, env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let ready: Timed | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d) => {
      out += d;
      const match = READY.exec(out);
      if (!ready && match) {
        ready = { ms: performance.now() - started, reported: Number(match[1]) };
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (ready) resolve(ready);
      else reject(new Error(`the demo exited (${code ?? signal}) before it was ready:\n${out.slice(-3000)}`));
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
    let whoamiOut = '';
    const whoami = await medianOf('mandate agent whoami', async () => {
      const run = await timeCommand(root, ['agent', 'whoami'], env, dir);
      whoamiOut = run.out.trim().split('\n')[0] ?? '';
      return run;
    });
    row('mandate agent whoami', whoami, `to exit, with an empty HOME; it said "${whoamiOut}"`);

    const taken: number[] = [];
    for (const port of DEMO_PORTS) if (!(await portFree(port))) taken.push(port);
    if (taken.length > 0) {
      rows.push(['mandate demo (npm start)', 'skipped', '']);
      notes.push(`mandate demo (npm start): not measured, port ${taken.join(', ')} in use (is a demo running?)`);
    } else {
      const demo = await medianOf('mandate demo (npm start)', () => timeDemo(root, dir));
      const reported = summarize(demo.map((r) => r.reported!));
      row('mandate demo (npm start)', demo, `to its ready line, on a warm data dir; the line itself says "ready in ${fmtInt(reported.median)} ms" (median)`);
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
