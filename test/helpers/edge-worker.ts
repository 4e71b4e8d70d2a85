/**
 * The edge tests' shared pieces: the Worker bundle built and run in workerd (`startEdgeWorker`,
 * scripts/edge-workerd.mjs under the `.cache/edge` Node 22), and, for the Node tests of the same
 * code, `GatewayState` objects over an in-memory storage (`memoryStorage`, `localNamespace`) and
 * namespaces that fail as an unreachable or broken Durable Object does (`failingNamespace`).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './auth-server.ts';
import { startFakeIssuer } from './gateway.ts';
import { after, before, mock } from 'node:test';
import worker from '../../src/gateway/workers/index.ts';
import { GatewayState } from '../../src/gateway/workers/durable-state.ts';
import type { DurableNamespace } from '../../src/gateway/workers/durable-state.ts';
import type { ListingStorage } from '../../src/gateway/workers/durable-audit.ts';

/** Miniflare + workerd + Node 22, installed by `npm run edge:install` under .cache/edge. */
export const EDGE = resolve('.cache/edge/node_modules');
export const NODE22 = join(EDGE, 'node/bin/node');
export const edgeAvailable = existsSync(NODE22) && existsSync(join(EDGE, 'miniflare/package.json'));
export const EDGE_SKIP_REASON = 'edge tests: run `npm run edge:install` (Miniflare and workerd need Node 22, installed under .cache/)';

/** Bundles the gateway Worker (scripts/build-edge.mjs) into `outfile`: the bundle of the sources as they are now. */
export function buildEdgeBundle(outfile: string): string {
  const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--outfile', outfile], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(built.status, 0, built.stderr);
  return outfile;
}

export interface EdgeWorker {
  child: ChildProcess;
  /** The first isolate's origin. */
  url: string;
  /** Every isolate's origin (`--instances N`). */
  urls: string[];
  stdout(): string;
  /** The JSON lines the Worker logged with `"audit": tag`. */
  logLines(tag: string): Record<string, unknown>[];
  /** Waits for a logged line (written when the response is complete: may land just after it). */
  waitForLine(tag: string, predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Closes its stdin (scripts/edge-workerd.mjs then disposes of workerd) and waits for the exit. */
  stop(): Promise<void>;
}

/** `scripts/edge-workerd.mjs <args>` under the .cache Node 22; resolves when workerd listens. */
export async function startEdgeWorker(args: string[], startupMs = 30_000): Promise<EdgeWorker> {
  let out = '';
  let err = '';
  const child = spawn(NODE22, ['scripts/edge-workerd.mjs', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const first = await new Promise<{ url: string; urls?: string[] }>((ready, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`workerd did not start in ${startupMs} ms:\n${out}\n${err}`));
    }, startupMs);
    const check = () => {
      const line = out.split('\n').find((l) => l.startsWith('{"url":'));
      if (line && out.slice(out.indexOf(line) + line.length).includes('\n')) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        ready(JSON.parse(line) as { url: string; urls?: string[] });
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`workerd exited (${code}):\n${out}\n${err}`));
    });
  });
  const logLines = (tag: string) =>
    out
      .split('\n')
      .filter((line) => line.includes(`"audit":"${tag}"`))
      .map((line) => JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>);
  return {
    child,
    url: first.url,
    urls: first.urls ?? [first.url],
    stdout: () => out,
    logLines,
    async waitForLine(tag, predicate) {
      for (let i = 0; i < 50; i++) {
        const line = logLines(tag).find(predicate);
        if (line) return line;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.fail(`no such ${tag} line in the Worker's output:\n${out}\n${err}`);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      // SIGTERM disposes of workerd too; SIGKILL would leave it running, so only as a last resort.
      const timers = [setTimeout(() => child.kill('SIGTERM'), 10_000), setTimeout(() => child.kill('SIGKILL'), 20_000)];
      await exited;
      for (const timer of timers) clearTimeout(timer);
    },
  };
}

/** The gateway Worker in workerd with its Durable Objects on disk: stopped and started again on the same state. */
export interface PersistedGateway {
  /** The first isolate's origin (stable across restarts): the routes' public URLs are on it. */
  origin: string;
  /** The directory GATEWAY_STATE is persisted in. */
  persist: string;
  /** The running Worker (after `start`). */
  worker(): EdgeWorker;
  /** Every isolate's origin, the first one's first. */
  urls(): string[];
  /** What the Worker logged, in this run and the ones before a restart. */
  stdout(): string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops workerd and deletes the directory. */
  dispose(): Promise<void>;
}

/**
 * Builds the bundle into a temporary directory and runs it in workerd with `{ routes: routes(origin) }`
 * on a free loopback port, GATEWAY_STATE persisted there, in `instances` isolates (default 2: the
 * others share the first one's objects, as the isolates of one Worker do), with `bindings`
 * (`NAME=VALUE`). Started once; `stop()` then `start()` is a restart on the same state.
 */
export async function startPersistedGateway(routes: (origin: string) => unknown[], options: { instances?: number; bindings?: string[]; prefix?: string } = {}): Promise<PersistedGateway> {
  const dir = mkdtempSync(join(tmpdir(), options.prefix ?? 'mandate-edge-persisted-'));
  const script = buildEdgeBundle(join(dir, 'gateway.js'));
  const persist = join(dir, 'state');
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const configFile = join(dir, 'gateway.json');
  writeFileSync(configFile, JSON.stringify({ routes: routes(origin) }));
  const args = ['--config', configFile, '--script', script, '--host', '127.0.0.1', '--port', String(port), '--persist', persist, '--instances', String(options.instances ?? 2), ...(options.bindings ?? []).flatMap((binding) => ['--binding', binding])];
  let running: EdgeWorker | undefined;
  let earlier = '';
  const gateway: PersistedGateway = {
    origin,
    persist,
    worker: () => running ?? assert.fail('workerd is not running'),
    urls: () => gateway.worker().urls,
    stdout: () => earlier + (running?.stdout() ?? ''),
    async start() {
      running = await startEdgeWorker(args);
      assert.equal(running.url, origin);
    },
    async stop() {
      const stopping = running;
      running = undefined;
      if (!stopping) return;
      // The runner disposes of workerd, then exits: the port is free again for the restart.
      await stopping.stop();
      earlier += stopping.stdout();
    },
    async dispose() {
      await gateway.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await gateway.start();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return gateway;
}

/**
 * For a `describe` of Node tests of the Worker entry: a fake issuer (started in `before`) for the
 * tokens, the route's `resource`, and the entry's `console.log` lines (its audit events) and
 * `console.error` lines collected, `console.warn` silenced; all undone in `after`.
 */
export function workerEntryBench(resource = 'https://edge.test/mcp') {
  const bench = { resource, lines: [] as string[], errors: [] as string[], issuer: undefined as unknown as Awaited<ReturnType<typeof startFakeIssuer>> };
  before(async () => {
    mock.method(console, 'log', (line: string) => void bench.lines.push(line));
    mock.method(console, 'warn', () => undefined);
    mock.method(console, 'error', (line: string) => void bench.errors.push(line));
    bench.issuer = await startFakeIssuer();
  });
  after(async () => {
    mock.restoreAll();
    await bench.issuer?.close();
  });
  return bench;
}

/**
 * One request to the Worker entry (`src/gateway/workers/index.ts`) in this process, with `env` as
 * its bindings; waits for what it handed to `waitUntil`, then for its audit line in `lines` (none
 * when the entry answered before the gateway's chain, e.g. 500 when the routes do not build).
 */
export async function callWorker(request: Request, env: Record<string, unknown>, lines: string[]) {
  const waits: Promise<unknown>[] = [];
  const response = await worker.fetch(request, env, { waitUntil: (promise) => void waits.push(promise) });
  const requestId = response.headers.get('x-request-id');
  const body = (await response.json()) as { error?: { code: number; message: string } };
  await Promise.all(waits);
  const event = requestId ? await auditLineOf(lines, requestId) : undefined;
  return { response, body, event };
}

/**
 * The audit line (`"audit":"mandate-gateway"`, as JSON) of a request in `lines` (what the Worker
 * entry logged, in a Node test); it is written once the arguments are hashed, shortly after the
 * response, so it is waited for a while.
 */
export async function auditLineOf(lines: string[], requestId: string | null): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const event = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((e) => e.request_id === requestId);
    if (event) return event;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`no audit line for ${requestId}`);
}

/** A Durable Object storage in memory (the calls the GatewayState kinds use), with its data and alarm to look at. */
export function memoryStorage() {
  const data = new Map<string, unknown>();
  let alarm: number | null = null;
  const storage: ListingStorage = {
    get: <T>(key: string) => Promise.resolve(structuredClone(data.get(key)) as T | undefined),
    put: (key, value) => Promise.resolve(void data.set(key, structuredClone(value))),
    deleteAll: () => Promise.resolve(void (data.clear(), (alarm = null))),
    setAlarm: (at) => Promise.resolve(void (alarm = at)),
    getAlarm: () => Promise.resolve(alarm),
    delete: (keys) => Promise.resolve(keys.filter((key) => data.delete(key)).length),
    list: <T>({ prefix, limit }: { prefix: string; limit?: number }) =>
      Promise.resolve(
        new Map(
          [...data.keys()]
            .filter((key) => key.startsWith(prefix))
            .sort()
            .slice(0, limit ?? Infinity)
            .map((key) => [key, structuredClone(data.get(key)) as T]),
        ),
      ),
  };
  return { storage, data, alarm: () => alarm ?? undefined };
}

/** A GatewayState namespace in this process: one object (and storage) per name, as Cloudflare keeps them, each with `env`. */
export function localNamespace(env: Record<string, unknown> = {}) {
  const objects = new Map<string, { object: GatewayState; memory: ReturnType<typeof memoryStorage> }>();
  const entry = (name: string) => {
    let found = objects.get(name);
    if (!found) {
      const memory = memoryStorage();
      found = { object: new GatewayState({ storage: memory.storage }, env), memory };
      objects.set(name, found);
    }
    return found;
  };
  const namespace: DurableNamespace = {
    idFromName: (name) => name,
    get: (id) => ({ fetch: (input, init) => entry(id as string).object.fetch(new Request(input, init)) }),
  };
  return { namespace, objects, entry };
}

/**
 * A namespace whose every object fails: `unreachable` (the stub's fetch rejects, as when the object
 * was reset) or `throws` (it answers 500, as when its code threw).
 */
export function failingNamespace(how: 'unreachable' | 'throws'): DurableNamespace {
  return {
    idFromName: (name) => name,
    get: () => ({
      fetch: () => (how === 'unreachable' ? Promise.reject(new Error('Durable Object reset because its code was updated')) : Promise.resolve(new Response('internal error', { status: 500 }))),
    }),
  };
}
