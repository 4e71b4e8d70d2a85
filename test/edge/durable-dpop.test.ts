/**
 * DPoP proof `jti`s in the `GatewayState` Durable Object (the `dpop:` kind, issue 17), in Node (the
 * class and the Worker entry are web-standard): the object's set-if-absent with expiry and its
 * alarm, `DurableDpopReplay` (one object per proof), the Worker failing closed — 503
 * `dpop_replay_unavailable` with the reason audited — when the object cannot answer, and a DPoP
 * route with `replay` refusing to build without the binding. (test/edge/dpop-workerd.test.ts runs
 * the real thing in workerd: two isolates, and a restart.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createDpopProof, generateDpopKey, jwkThumbprint } from '../../src/core/dpop.ts';
import { DpopReplayUnavailable } from '../../src/gateway/dpop.ts';
import { DurableDpopReplay } from '../../src/gateway/workers/durable-dpop.ts';
import { GatewayState } from '../../src/gateway/workers/index.ts';
import { callWorker, failingNamespace, localNamespace, memoryStorage, workerEntryBench } from '../helpers/edge-worker.ts';
import { listedTools, MCP_HEADERS, toolCall } from '../helpers/gateway.ts';

const send = async (object: GatewayState, command: unknown) => object.fetch(new Request('https://gateway-state/', { method: 'POST', body: JSON.stringify(command) }));

describe('the dpop: objects of GatewayState', () => {
  it('claim is true once within the TTL, then false; true again after it; the alarm deletes the record', async () => {
    const memory = memoryStorage();
    const object = new GatewayState(memory);
    assert.deepEqual(await (await send(object, { op: 'dpop-claim', ttlMs: 60_000 })).json(), { claimed: true });
    assert.deepEqual(await (await send(object, { op: 'dpop-claim', ttlMs: 60_000 })).json(), { claimed: false });
    assert.equal(memory.data.get('kind'), 'dpop');
    assert.ok(memory.alarm()! > Date.now() + 59_000, 'an alarm at the expiry');
    await object.alarm();
    assert.ok(memory.data.has('dpop'), 'kept until it expires');

    const short = memoryStorage();
    const lapsing = new GatewayState(short);
    assert.deepEqual(await (await send(lapsing, { op: 'dpop-claim', ttlMs: 1 })).json(), { claimed: true });
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(await (await send(lapsing, { op: 'dpop-claim', ttlMs: 1 })).json(), { claimed: true }, 'lapsed: read as absent');
    await new Promise((r) => setTimeout(r, 5));
    await lapsing.alarm();
    assert.equal(short.data.size, 0, 'the alarm deleted the lapsed record');
    assert.equal((await send(lapsing, { op: 'dpop-claim', ttlMs: 0 })).status, 400);
  });

  it('DurableDpopReplay: one object per proof key; a failing object is DpopReplayUnavailable (fail closed)', async () => {
    const { namespace, objects } = localNamespace();
    const store = new DurableDpopReplay(namespace);
    const key = 'dpop:jkt-1:hash-of-jti-1';
    assert.equal(await store.claim(key, 601), true);
    assert.equal(await store.claim(key, 601), false);
    assert.equal(await store.claim('dpop:jkt-1:hash-of-jti-2', 601), true);
    assert.deepEqual([...objects.keys()], [key, 'dpop:jkt-1:hash-of-jti-2']);
    assert.ok(objects.get(key)!.memory.alarm()! > Date.now() + 600_000, 'kept for the TTL given (2 × max age + 1 s)');

    await assert.rejects(
      () => new DurableDpopReplay(failingNamespace('throws')).claim(key, 601),
      (error: unknown) => error instanceof DpopReplayUnavailable && error.message === 'the DPoP replay store (Durable Object) cannot answer: the Durable Object answered 500',
    );
    await assert.rejects(
      () => new DurableDpopReplay(failingNamespace('unreachable')).claim(key, 601),
      (error: unknown) => error instanceof DpopReplayUnavailable && error.message === 'the DPoP replay store (Durable Object) cannot answer: Durable Object reset because its code was updated',
    );
  });
});

describe('the Worker with a DPoP route: the replay store in GATEWAY_STATE', () => {
  const bench = workerEntryBench();
  const { lines, errors, resource } = bench;

  /** A DPoP call to the Worker entry; `name` makes the config distinct (the Worker rebuilds its routes when it changes). */
  async function call(name: string, env: Record<string, unknown>, dpop: Record<string, unknown> = { mode: 'allow' }, proof?: { token: string; proof: string }) {
    const config = { routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/never', resource, resource_name: name, authorization_servers: [bench.issuer.issuer], tools: listedTools(), dpop }] };
    const made = proof ?? (await boundProof());
    const request = new Request(resource, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `DPoP ${made.token}`, dpop: made.proof }, body: JSON.stringify(toolCall('echo')) });
    return { ...(await callWorker(request, { MANDATE_GATEWAY_CONFIG: JSON.stringify(config), ...env }, lines)), made };
  }

  async function boundProof() {
    const key = await generateDpopKey();
    const token = await bench.issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', cnf: { jkt: await jwkThumbprint(key.publicJwk) } });
    const body = JSON.stringify(toolCall('echo'));
    return { token, proof: await createDpopProof(key, { htm: 'POST', htu: resource, accessToken: token, body: new TextEncoder().encode(body) }) };
  }

  for (const how of ['unreachable', 'throws'] as const) {
    it(`the dpop: object ${how === 'unreachable' ? 'cannot be reached' : 'fails'}: 503 temporarily_unavailable, dpop_replay_unavailable (never let through)`, async () => {
      const { response, body, event } = await call(`replay-${how}`, { GATEWAY_STATE: failingNamespace(how) });
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('retry-after'), '1');
      assert.equal(body.error?.code, -32603);
      assert.equal(body.error?.message, 'temporarily_unavailable: retry shortly');
      assert.ok(event, 'an audit line');
      assert.equal(event.decision, 'error');
      assert.equal(event.rejection, 'dpop_replay_unavailable');
      assert.equal(event.reason, `the DPoP replay store (Durable Object) cannot answer: ${how === 'unreachable' ? 'Durable Object reset because its code was updated' : 'the Durable Object answered 500'}`);
    });
  }

  it('a proof is claimed in its own dpop: object: the replay is refused (dpop_replay)', async () => {
    const { namespace, objects } = localNamespace();
    const first = await call('replay-local', { GATEWAY_STATE: namespace });
    // The upstream is unreachable: the proof passed every check, the call went on (and failed there).
    assert.equal(first.response.status, 502, JSON.stringify(first.body));
    assert.equal([...objects.keys()].filter((name) => name.startsWith('dpop:')).length, 1);
    const again = await call('replay-local', { GATEWAY_STATE: namespace }, undefined, first.made);
    assert.equal(again.response.status, 401);
    assert.equal(again.body.error?.code, -32001);
    assert.equal(again.event?.rejection, 'dpop_replay');
    assert.equal(again.event?.reason, 'the DPoP proof jti was used before');
  });

  it('no GATEWAY_STATE and dpop.replay (the default): the routes do not build — 500, the reason logged, never per-isolate memory', async () => {
    const before = errors.length;
    const { response, body } = await call('no-binding', {});
    assert.equal(response.status, 500);
    assert.equal(body.error?.message, 'gateway not configured');
    const logged = errors.slice(before).map((line) => JSON.parse(line) as { msg: string; reason: string });
    assert.deepEqual(logged, [
      {
        level: 'error',
        msg: 'cannot build the gateway routes',
        reason: 'routes[0] (/mcp) dpop.replay needs the GATEWAY_STATE Durable Object binding (proof jtis shared by every isolate); bind it, or set dpop.replay: false to accept a replayed proof within its iat window',
      },
    ]);
  });

  it('no GATEWAY_STATE with dpop.replay: false (said explicitly) builds; mode off needs nothing', async () => {
    const optedOut = await call('no-binding-no-replay', {}, { mode: 'allow', replay: false });
    assert.equal(optedOut.response.status, 502, JSON.stringify(optedOut.body));
    const off = await call('no-binding-off', {}, { mode: 'off' });
    assert.equal(off.response.status, 401, 'the DPoP scheme is refused on a route without DPoP, as always');
    assert.equal(off.event?.rejection, 'invalid_token');
  });
});
