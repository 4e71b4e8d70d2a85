/**
 * The `GatewayState` Durable Object and the Worker's stores over it, in Node (the class and the
 * Worker entry are web-standard): the object's counters and bindings on an in-memory storage, and
 * the Worker failing closed — 503 with the audit reason — when the object cannot be reached or
 * fails. (test/edge/durable-state-workerd.test.ts runs the real thing in workerd, across a restart.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import { GatewayState } from '../../src/gateway/workers/index.ts';
import { callWorker, failingNamespace, memoryStorage, workerEntryBench } from '../helpers/edge-worker.ts';
import { listedTools, MCP_HEADERS, toolCall } from '../helpers/gateway.ts';

const send = async (object: GatewayState, command: unknown) => (await object.fetch(new Request('https://gateway-state/', { method: 'POST', body: JSON.stringify(command) }))).json();

describe('the GatewayState Durable Object', () => {
  it('counts a fixed window: `points` allowed, then refused with the time to the window\'s end; an alarm at its end', async () => {
    const memory = memoryStorage();
    const object = new GatewayState(memory);
    for (let i = 0; i < 2; i++) assert.deepEqual(await send(object, { op: 'consume', points: 2, windowMs: 60_000 }), { allowed: true, msBeforeNext: 0 });
    const refused = (await send(object, { op: 'consume', points: 2, windowMs: 60_000 })) as { allowed: boolean; msBeforeNext: number };
    assert.equal(refused.allowed, false);
    assert.ok(refused.msBeforeNext > 59_000 && refused.msBeforeNext <= 60_000);
    assert.ok(memory.alarm()! > Date.now());
    await object.alarm();
    assert.ok(memory.data.has('counter'), 'kept until the window ends');
  });

  it('binds a session to its first owner; verdicts for others; ends; lapses when idle (lazy, and by the alarm)', async () => {
    const memory = memoryStorage();
    const object = new GatewayState(memory);
    const alice = { sub: 'alice', clientId: 'agent-1' };
    assert.deepEqual(await send(object, { op: 'check', owner: alice, idleMs: 60_000 }), { verdict: 'unknown' });
    await send(object, { op: 'bind', owner: alice, idleMs: 60_000 });
    await send(object, { op: 'bind', owner: { sub: 'bob' }, idleMs: 60_000 });
    assert.deepEqual(await send(object, { op: 'check', owner: alice, idleMs: 60_000 }), { verdict: 'own' });
    assert.deepEqual(await send(object, { op: 'check', owner: { sub: 'bob', clientId: 'agent-1' }, idleMs: 60_000 }), { verdict: 'other_subject' });
    assert.deepEqual(await send(object, { op: 'check', owner: { sub: 'alice', clientId: 'agent-2' }, idleMs: 60_000 }), { verdict: 'other_client' });
    await send(object, { op: 'end' });
    assert.deepEqual(await send(object, { op: 'check', owner: alice, idleMs: 60_000 }), { verdict: 'unknown' });

    await send(object, { op: 'bind', owner: alice, idleMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(await send(object, { op: 'check', owner: alice, idleMs: 1 }), { verdict: 'unknown' }, 'idle past its lifetime');
    await object.alarm();
    assert.equal(memory.data.size, 0, 'the alarm deleted the lapsed binding');
    assert.equal((await object.fetch(new Request('https://gateway-state/', { method: 'POST', body: '{"op":"nope"}' }))).status, 400);
  });
});

describe('the Worker with a GATEWAY_STATE that fails: 503, fail closed, the reason audited', () => {
  const bench = workerEntryBench();
  const { lines, resource } = bench;

  async function call(how: 'unreachable' | 'throws', headers: Record<string, string> = {}) {
    // A distinct config per case: the Worker rebuilds its routes (and stores) when the config changes.
    const config = { routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/never', resource, resource_name: how, authorization_servers: [bench.issuer.issuer], tools: listedTools(), rate_limits: [{ name: 'per-subject', key: ['subject'], limit: 5, window_seconds: 60 }] }] };
    const token = await bench.issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1' });
    const env = { MANDATE_GATEWAY_CONFIG: JSON.stringify(config), GATEWAY_STATE: failingNamespace(how) };
    const { response, body, event } = await callWorker(new Request(resource, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers }, body: JSON.stringify(toolCall('echo')) }), env, lines);
    assert.ok(event && body.error);
    return { response, body: body as { error: { code: number } }, event };
  }

  it('rate limit object unreachable: 503 rate_limiter_unavailable, nothing forwarded', async () => {
    const { response, body, event } = await call('unreachable');
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '1');
    assert.equal(body.error.code, -32603);
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'rate_limiter_unavailable');
    assert.equal(event.reason, 'rate limit store unavailable: Durable Object reset because its code was updated');
  });

  it('session object failing: 503 session_store_unavailable', async () => {
    const { response, body, event } = await call('throws', { 'mcp-session-id': 'some-session' });
    assert.equal(response.status, 503);
    assert.equal(body.error.code, -32603);
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'session_store_unavailable');
    assert.equal(event.reason, 'session store unavailable: the Durable Object answered 500');
  });
});

describe('examples/edge/wrangler.jsonc', () => {
  it('binds GATEWAY_STATE to the bundle\'s GatewayState with a migration, and its config var is a valid gateway config', async () => {
    // JSONC: whole-line comments only in this file.
    const wrangler = JSON.parse(readFileSync('examples/edge/wrangler.jsonc', 'utf8').replace(/^\s*\/\/.*$/gm, '')) as {
      durable_objects: { bindings: { name: string; class_name: string }[] };
      migrations: { tag: string; new_sqlite_classes?: string[] }[];
      vars: { MANDATE_GATEWAY_CONFIG: unknown };
    };
    assert.deepEqual(wrangler.durable_objects.bindings, [{ name: 'GATEWAY_STATE', class_name: 'GatewayState' }]);
    assert.deepEqual(wrangler.migrations, [{ tag: 'v1', new_sqlite_classes: ['GatewayState'] }]);
    const parsed = gatewayConfigSchema.safeParse(wrangler.vars.MANDATE_GATEWAY_CONFIG);
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
    assert.equal(typeof (await import('../../src/gateway/workers/index.ts')).GatewayState, 'function');
  });
});
