/**
 * One gateway config, two targets (issue 16): the Node gateway (`startGateway`, audit events read
 * from its JSONL file) or the Worker bundle in workerd (`scripts/edge-workerd.mjs` under the
 * `.cache/edge` Node 22, audit events parsed from the Worker's `console.log` lines on stdout),
 * behind the same handle, so that one black-box suite (test/gateway/blackbox/) runs against both.
 * Loopback only; a started gateway is stopped by `stop()` (workerd: its stdin pipe is closed, and
 * the test process's end closes it too).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GatewayConfigInput } from '../../src/config/gateway-schema.ts';
import { freePort } from './auth-server.ts';
import { buildEdgeBundle, EDGE_SKIP_REASON, edgeAvailable, NODE22 } from './edge-worker.ts';
import { startTestGateway } from './gateway.ts';
import { skipUnless } from './services.ts';

export type GatewayTarget = 'node' | 'workerd';
export const targets: readonly GatewayTarget[] = ['node', 'workerd'];

const STARTUP_MS = 30_000;
const AUDIT_WAIT_MS = 5_000;

/** `describe` options for a target: workerd skips with a reason without `.cache/edge` (fails under MANDATE_REQUIRE_SERVICES=1). */
export function onTarget(target: GatewayTarget): { skip: string | false } {
  if (target === 'node') return { skip: false };
  return skipUnless(edgeAvailable, EDGE_SKIP_REASON);
}

export type AuditEvent = Record<string, unknown>;

export interface TargetGateway {
  target: GatewayTarget;
  /** The gateway's origin, e.g. http://127.0.0.1:40123 (a route's resource is `${url}${path}`). */
  url: string;
  /** The audit events written so far, oldest first, as the target writes them (no target field added). */
  auditEvents(): Promise<AuditEvent[]>;
  /** The first event matching, waiting for it (an event is written once the response is complete). */
  waitForAudit(predicate: (event: AuditEvent) => boolean): Promise<AuditEvent>;
  stop(): Promise<void>;
}

export interface TargetOptions {
  /** Secrets the routes name (`client_secret_env`…): the Node gateway's env, or Worker bindings. */
  secrets?: Record<string, string>;
  /** workerd: false runs the Worker without its GATEWAY_STATE Durable Object binding (state per isolate). Node: no effect. */
  durableState?: boolean;
}

type Routes = GatewayConfigInput['routes'];

/** Starts a gateway for `build(origin)`'s routes on `target`, on a free loopback port. */
export async function startGatewayOn(target: GatewayTarget, build: (origin: string) => Routes, options: TargetOptions = {}): Promise<TargetGateway> {
  const gateway = target === 'node' ? await startNode(build, options) : await startWorkerd(build, options);
  return {
    ...gateway,
    async waitForAudit(predicate) {
      const deadline = Date.now() + AUDIT_WAIT_MS;
      for (;;) {
        const event = (await gateway.auditEvents()).find(predicate);
        if (event) return event;
        if (Date.now() > deadline) assert.fail(`${target}: no such audit event in ${AUDIT_WAIT_MS} ms; events:\n${JSON.stringify(await gateway.auditEvents(), null, 1)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

async function startNode(build: (origin: string) => Routes, options: TargetOptions): Promise<Omit<TargetGateway, 'waitForAudit'>> {
  const gateway = await startTestGateway(build, {}, { ...process.env, ...options.secrets });
  return { target: 'node', url: gateway.url, auditEvents: () => gateway.auditEvents(), stop: () => gateway.close() };
}

async function startWorkerd(build: (origin: string) => Routes, options: TargetOptions): Promise<Omit<TargetGateway, 'waitForAudit'>> {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-blackbox-'));
  const script = join(dir, 'gateway.js');
  buildEdgeBundle(script);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const configFile = join(dir, 'gateway.json');
  writeFileSync(configFile, JSON.stringify({ routes: build(url) }));
  const bindings = Object.entries(options.secrets ?? {}).flatMap(([name, value]) => ['--binding', `${name}=${value}`]);
  // stdin is a pipe: closing it (stop(), or this process ending) stops the runner and workerd. The
  // runner leads its own process group, so that a last-resort SIGKILL takes workerd with it.
  const state = options.durableState === false ? ['--state', 'off'] : [];
  const child: ChildProcess = spawn(NODE22, ['scripts/edge-workerd.mjs', '--config', configFile, '--script', script, '--host', '127.0.0.1', '--port', String(port), ...bindings, ...state], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  // MANDATE_BLACKBOX_DEBUG=1: the Worker's output (its logs, workerd's errors) on this process's stderr.
  if (process.env.MANDATE_BLACKBOX_DEBUG === '1') {
    child.stdout!.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  }
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`workerd did not start in ${STARTUP_MS} ms:\n${stdout}\n${stderr}`)), STARTUP_MS);
      const check = () => {
        if (!stdout.includes('{"url":')) return;
        clearTimeout(timer);
        child.stdout!.off('data', check);
        ready();
      };
      child.stdout!.on('data', check);
      child.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`workerd exited (${code}):\n${stdout}\n${stderr}`));
      });
    });
  } catch (error) {
    killGroup(child);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  assert.match(stdout, new RegExp(`"url":"${url}"`));
  const marker = '"audit":"mandate-gateway"';
  return {
    target: 'workerd',
    url,
    async auditEvents() {
      // console.log → workerd's stdout → Miniflare's, one event per line; the marker field is the Worker's envelope.
      return stdout
        .split('\n')
        .filter((line) => line.includes(marker))
        .map((line) => {
          const { audit, ...event } = JSON.parse(line.slice(line.indexOf('{'))) as AuditEvent;
          assert.equal(audit, 'mandate-gateway');
          return event;
        });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        // The runner disposes of workerd, then exits; if it has not within 5 s, the group is killed.
        child.stdin!.end();
        child.kill('SIGTERM');
        const timer = setTimeout(() => killGroup(child), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** SIGKILL to the runner's process group (the runner and its workerd). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** What a refusal must show on every target: the status, the JSON-RPC error code, and the audit event's rejection and reason. */
export interface ExpectedRefusal {
  status: number;
  code: number;
  rejection: string;
  /** The audit event's reason, exactly, or a pattern. */
  reason: string | RegExp;
}

/** Asserts a refusal on the wire and in the audit event of the same request (by its X-Request-Id). */
export async function assertRefused(gateway: TargetGateway, res: { status: number; headers: Headers; text: string; json?: Record<string, unknown> }, expected: ExpectedRefusal): Promise<AuditEvent> {
  assert.equal(res.status, expected.status, `${gateway.target}: ${res.text}`);
  assert.equal((res.json?.error as { code?: number } | undefined)?.code, expected.code, `${gateway.target}: ${res.text}`);
  const requestId = res.headers.get('x-request-id');
  assert.ok(requestId, `${gateway.target}: the refusal carries X-Request-Id`);
  const event = await gateway.waitForAudit((e) => e.request_id === requestId);
  assert.equal(event.decision, expected.status >= 500 ? 'error' : 'deny');
  assert.equal(event.status, expected.status);
  assert.equal(event.rejection, expected.rejection);
  if (typeof expected.reason === 'string') assert.equal(event.reason, expected.reason);
  else assert.match(String(event.reason), expected.reason);
  return event;
}
