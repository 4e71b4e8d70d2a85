/**
 * The `revocations:`, `audit:` and `approval:` objects of `GatewayState`, and the Worker's stores over
 * them, in Node (the code is web-standard): the revocation feed's object (the secret read from its
 * own binding and never stored, polls spaced by the interval, the catch-up after idling that fails
 * closed), an audit shard (batches, a failing sink keeps every event and backs off), the approval
 * records (first kept, claimed once, lapse), and the Worker failing closed — 503 with the audit
 * reason — when the object cannot be reached. test/edge/durable-feeds-workerd.test.ts runs them in workerd.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it, mock } from 'node:test';
import worker, { GatewayState } from '../../src/gateway/workers/index.ts';
import { DurableApprovals } from '../../src/gateway/workers/durable-approvals.ts';
import { auditSinkSettings, EdgeAudit, ISOLATE_BATCH_SIZE } from '../../src/gateway/workers/durable-audit.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';
import { DurableRevocationList, RevocationFeedObject, type FeedConfig } from '../../src/gateway/workers/durable-revocations.ts';
import type { DurableNamespace } from '../../src/gateway/workers/durable-state.ts';
import { ApprovalStoreUnavailable } from '../../src/gateway/approvals.ts';
import { callWorker, failingNamespace, localNamespace, memoryStorage, workerEntryBench } from '../helpers/edge-worker.ts';
import { listedTools, MCP_HEADERS, toolCall } from '../helpers/gateway.ts';

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('the revocation feed in a Durable Object', () => {
  let server: Server;
  let base: string;
  const requests: { url: string; auth: string }[] = [];
  let up = true;
  const revoked: { jti: string; exp: number }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      requests.push({ url: req.url ?? '', auth: req.headers.authorization ?? '' });
      if (!up) return void res.writeHead(503).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ next_since: 100, tokens: revoked, grants: [], clients: [] }));
    });
    base = await listen(server);
  });
  after(() => {
    server.close();
    server.closeAllConnections();
  });

  const feedOf = (pollMs: number): FeedConfig => ({ endpoint: `${base}/revocations`, issuer: 'https://as.test', clientId: 'gateway', secretEnv: 'REVOCATION_SECRET', pollMs });
  const read = async (object: RevocationFeedObject, feed: FeedConfig, known?: number) => (await object.read({ op: 'revocations', feed, known })).json() as Promise<{ version: number; snapshot?: { loaded: boolean; tokens: [string, number][]; lastError?: string } }>;

  it('polls with the secret of its own binding, never stores it; answers the version alone when unchanged; the alarm polls only when the interval has passed', async () => {
    const memory = memoryStorage();
    const object = new RevocationFeedObject(memory.storage, { REVOCATION_SECRET: 'the-secret-value' });
    const feed = feedOf(60_000);
    revoked.push({ jti: 'gone', exp: Math.floor(Date.now() / 1000) + 600 });
    const first = await read(object, feed);
    assert.equal(first.snapshot?.loaded, true);
    assert.deepEqual(first.snapshot?.tokens.map(([jti]) => jti), ['gone']);
    assert.equal(requests.at(-1)!.auth, `Basic ${Buffer.from('gateway:the-secret-value').toString('base64')}`);
    assert.ok(!JSON.stringify([...memory.data]).includes('the-secret-value'), 'the secret is not in the storage');
    assert.ok(memory.alarm()! > Date.now() + 50_000, 'the next poll at the interval');

    const count = requests.length;
    assert.deepEqual(await read(object, feed, first.version), { version: first.version }, 'unchanged: no list sent');
    await object.alarm();
    assert.equal(requests.length, count, 'not polled before the interval, whoever reads');

    // Evicted (a new instance over the same storage): the list is restored, no poll needed.
    const again = new RevocationFeedObject(memory.storage, { REVOCATION_SECRET: 'the-secret-value' });
    assert.deepEqual((await read(again, feed)).snapshot?.tokens.map(([jti]) => jti), ['gone']);
    assert.equal(requests.length, count);
    const none = new RevocationFeedObject(memoryStorage().storage, {});
    const refused = await none.read({ op: 'revocations', feed });
    assert.equal(refused.status, 500);
    assert.match(((await refused.json()) as { error: string }).error, /REVOCATION_SECRET .* is not set/);
  });

  it('stops polling when nobody reads it; the next read catches up first, and fails closed when that poll fails', async () => {
    const memory = memoryStorage();
    const env = { REVOCATION_SECRET: 's' };
    const object = new RevocationFeedObject(memory.storage, env, () => 0);
    const feed = feedOf(1);
    assert.equal((await read(object, feed)).snapshot?.loaded, true);
    await object.alarm();
    assert.equal((await memory.storage.get<{ idle: boolean }>('feed'))!.idle, true, 'idle: no more alarms');
    up = false;
    try {
      const stale = await read(object, feed);
      assert.equal(stale.snapshot?.loaded, false);
      assert.match(stale.snapshot!.lastError!, /^the revocation list was not polled for \d+ s \(no reads\) and the catch-up poll failed: revocation list .* answered 503$/);

      // The isolate's side turns it into the 503 verdict.
      const { namespace } = localNamespace(env);
      const list = new DurableRevocationList(namespace, feed, { endpoint: feed.endpoint, clientId: 'gateway', clientSecret: 'unused', pollMs: 1 });
      const verdict = await list.verdictFor({ jti: 'x' });
      assert.equal(verdict?.refuse, 'unavailable');
    } finally {
      up = true;
    }
    const caught = await read(object, feed);
    assert.equal(caught.snapshot?.loaded, true, 'caught up once the AS answers');
  });

  it('the isolate reads the object once per ISOLATE_LIST_MS, and refuses (unavailable) when the object cannot be read', async () => {
    const { namespace } = localNamespace({ REVOCATION_SECRET: 's' });
    let reads = 0;
    let reachable = true;
    const counted: DurableNamespace = {
      idFromName: (name) => name,
      get: (id) => ({
        fetch: (input, init) => {
          reads++;
          return reachable ? namespace.get(id).fetch(input, init) : Promise.reject(new Error('Network connection lost.'));
        },
      }),
    };
    const feed = feedOf(60_000);
    const list = new DurableRevocationList(counted, feed, { endpoint: feed.endpoint, clientId: 'gateway', clientSecret: 'unused', pollMs: 60_000 });
    assert.deepEqual(await list.verdictFor({ jti: 'gone' }), { refuse: 'revoked', reason: 'the token was revoked' });
    assert.equal(await list.verdictFor({ jti: 'fine' }), undefined);
    assert.equal(reads, 1, 'the copy is used for a while');
    reachable = false;
    await new Promise((r) => setTimeout(r, 1_050));
    assert.deepEqual(await list.verdictFor({ jti: 'fine' }), { refuse: 'unavailable', reason: "the revocation list's Durable Object cannot be read: Network connection lost." });
    assert.equal(reads, 2);
  });
});

describe('an audit shard in a Durable Object', () => {
  let server: Server;
  let sinkUrl: string;
  let status = 500;
  const posts: { status: number; auth: string; events: { n: number }[] }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        posts.push({ status, auth: req.headers.authorization ?? '', events: JSON.parse(body) as { n: number }[] });
        res.writeHead(status).end();
      });
    });
    sinkUrl = await listen(server);
  });
  after(() => {
    server.close();
    server.closeAllConnections();
  });

  it('keeps the events until the sink takes them, backing off; then delivers them in order in batches of at most N', async () => {
    mock.method(console, 'warn', () => undefined);
    try {
      const memory = memoryStorage();
      const object = new GatewayState({ storage: memory.storage }, { AUDIT_SINK_URL: `${sinkUrl}/in`, AUDIT_SINK_TOKEN: 'tok', AUDIT_SINK_BATCH_SIZE: '2', AUDIT_SINK_BATCH_SECONDS: '30' });
      const append = (events: unknown[]) => object.fetch(new Request('https://gateway-state/', { method: 'POST', body: JSON.stringify({ op: 'audit', events }) }));
      assert.equal((await append([{ n: 1 }])).status, 200);
      assert.ok(memory.alarm()! > Date.now() + 25_000, 'a partial batch waits AUDIT_SINK_BATCH_SECONDS');
      await append([{ n: 2 }, { n: 3 }]);
      assert.ok(memory.alarm()! <= Date.now(), 'a full batch goes at once');

      status = 500;
      const before = Date.now();
      await object.alarm();
      await object.alarm();
      assert.deepEqual(posts.map((post) => [post.status, post.events.map((e) => e.n)]), [
        [500, [1, 2]],
        [500, [1, 2]],
      ]);
      assert.ok(memory.alarm()! >= before + 2_000, 'backing off: 1 s, then 2 s');
      assert.equal([...memory.data.keys()].filter((key) => key.startsWith('e:')).length, 3, 'nothing dropped');

      status = 200;
      await object.alarm();
      assert.deepEqual(posts.slice(2).map((post) => post.events.map((e) => e.n)), [[1, 2]]);
      assert.ok(memory.alarm()! > Date.now() + 25_000, 'the rest is a partial batch: it waits');
      await object.alarm();
      assert.deepEqual(posts.slice(2).map((post) => post.events.map((e) => e.n)), [[1, 2], [3]]);
      assert.ok(posts.every((post) => post.auth === 'Bearer tok'));
      assert.equal([...memory.data.keys()].filter((key) => key.startsWith('e:')).length, 0);
      assert.equal((await append([42])).status, 400);
    } finally {
      mock.restoreAll();
    }
  });
});

// Security review of issue 16 (DoS): one Durable Object call per event to one shard per isolate let
// junk traffic overload the shards; a sink down for long grew a shard's storage without bound.
describe('audit events: batched by the isolate, spread over the shards, bounded in each shard', () => {
  const event = (n: number) => ({ request_id: `req-${n}`, time: new Date(1_700_000_000_000 + n * 1000).toISOString(), decision: 'deny', n }) as unknown as GatewayAuditEvent;

  it('an isolate hands its events over in batches of at most ISOLATE_BATCH_SIZE, to shards chosen per batch; every request settles', async () => {
    mock.method(console, 'log', () => undefined);
    try {
      const calls: { shard: string; events: number }[] = [];
      const namespace: DurableNamespace = {
        idFromName: (name) => name,
        get: (id) => ({
          fetch: async (_input, init) => {
            calls.push({ shard: String(id), events: (JSON.parse(String(init!.body)) as { events: unknown[] }).events.length });
            return Response.json({});
          },
        }),
      };
      const audit = new EdgeAudit(namespace, auditSinkSettings({ AUDIT_SINK_URL: 'https://sink.test/in' }));
      for (let n = 0; n < 1000; n++) audit.record(event(n));
      await Promise.all(Array.from({ length: 1000 }, (_, n) => audit.settled(`req-${n}`)));
      assert.equal(calls.reduce((sum, call) => sum + call.events, 0), 1000, 'every event handed over');
      assert.ok(calls.every((call) => call.events <= ISOLATE_BATCH_SIZE));
      assert.ok(calls.length <= Math.ceil(1000 / ISOLATE_BATCH_SIZE) + 1, `${calls.length} calls for 1000 events`);
      assert.ok(new Set(calls.map((call) => call.shard)).size > 1, 'the batches spread over the shards');
      assert.ok(calls.every((call) => /^audit:[0-3]$/.test(call.shard)));
    } finally {
      mock.restoreAll();
    }
  });

  it('a request that asks after its event left the last 4,096 remembered is not left waiting forever', async () => {
    mock.method(console, 'log', () => undefined);
    try {
      const namespace: DurableNamespace = { idFromName: (name) => name, get: () => ({ fetch: async () => Response.json({}) }) };
      const audit = new EdgeAudit(namespace, auditSinkSettings({ AUDIT_SINK_URL: 'https://sink.test/in' }), 50);
      for (let n = 0; n < 4200; n++) audit.record(event(n));
      await Promise.all(Array.from({ length: 4200 }, (_, n) => audit.settled(`req-${n}`)));
      // req-0 finished 4,200 events ago: forgotten. Its settled() must still resolve (bounded here by 5 s).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = await Promise.race([audit.settled('req-0').then(() => 'resolved'), new Promise((r) => (timer = setTimeout(() => r('hung'), 5_000)))]);
      clearTimeout(timer);
      assert.equal(late, 'resolved');
      assert.equal(audit.waiting, 0, 'no waiter left behind');
    } finally {
      mock.restoreAll();
    }
  });

  it('a shard holds at most AUDIT_SINK_MAX_STORED events: the oldest are replaced by a counted audit_dropped marker, delivered in their place', async () => {
    const errors: string[] = [];
    mock.method(console, 'error', (line: string) => void errors.push(line));
    mock.method(console, 'warn', () => undefined);
    try {
      const memory = memoryStorage();
      const object = new GatewayState({ storage: memory.storage }, { AUDIT_SINK_URL: 'http://127.0.0.1:9/never', AUDIT_SINK_MAX_STORED: '5', AUDIT_SINK_BATCH_SIZE: '100' });
      const append = (events: unknown[]) => object.fetch(new Request('https://gateway-state/', { method: 'POST', body: JSON.stringify({ op: 'audit', events }) }));
      const stored = () => [...memory.data.entries()].filter(([key]) => key.startsWith('e:')).sort(([a], [b]) => a.localeCompare(b)).map(([, value]) => value as Record<string, unknown>);
      for (let n = 1; n <= 8; n++) assert.equal((await append([{ n, time: `t${n}` }])).status, 200);
      let events = stored();
      assert.equal(events.length, 5, 'bounded');
      assert.deepEqual({ event: events[0]!.event, dropped: events[0]!.dropped, from: events[0]!.from, to: events[0]!.to }, { event: 'audit_dropped', dropped: 4, from: 't1', to: 't4' });
      assert.deepEqual(events.slice(1).map((e) => e.n), [5, 6, 7, 8]);
      await append([{ n: 9, time: 't9' }, { n: 10, time: 't10' }]);
      events = stored();
      assert.equal(events.length, 5);
      assert.deepEqual({ dropped: events[0]!.dropped, from: events[0]!.from, to: events[0]!.to }, { dropped: 6, from: 't1', to: 't6' }, 'the marker counts everything dropped so far');
      assert.deepEqual(events.slice(1).map((e) => e.n), [7, 8, 9, 10]);
      assert.equal((await memory.storage.get<{ count: number }>('meta'))!.count, 5);
      assert.ok(errors.some((line) => line.includes('audit events dropped from the shard')), errors.join('\n'));
    } finally {
      mock.restoreAll();
    }
  });
});

describe('held approvals in Durable Objects', () => {
  it('keeps the first pending approval, claims once until released, forgets; records lapse', async () => {
    const { namespace, entry } = localNamespace();
    const store = new DurableApprovals(namespace);
    const first = { id: 'tx-1', url: 'https://as.test/approve/tx-1', expiresAt: 2_000_000_000 };
    assert.deepEqual(await store.remember('key-a', first, 60_000), first);
    assert.deepEqual(await store.remember('key-a', { ...first, id: 'tx-2' }, 60_000), first, 'the first one kept wins');
    assert.deepEqual(await store.recall('key-a'), first);
    assert.equal(await store.claim('tx-1', 60_000), true);
    assert.equal(await store.claim('tx-1', 60_000), false, 'claimed once');
    await store.release('tx-1');
    assert.equal(await store.claim('tx-1', 60_000), true, 'claimable again after a release');
    await store.forget('key-a');
    assert.equal(await store.recall('key-a'), undefined);

    await store.remember('key-b', first, 1);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(await store.recall('key-b'), undefined, 'lapsed');
    await entry('approval:key-b').object.alarm();
    assert.equal(entry('approval:key-b').memory.data.size, 0, 'deleted by the alarm');

    const down = new DurableApprovals(failingNamespace('throws'));
    await assert.rejects(() => down.recall('key-a'), (error: unknown) => error instanceof ApprovalStoreUnavailable && error.message === 'approval store unavailable: the Durable Object answered 500');
  });
});

describe('the Worker with revocations, approvals and an audit sink in a GATEWAY_STATE that fails', () => {
  const bench = workerEntryBench();
  const { lines, resource } = bench;

  const unreachable = failingNamespace('unreachable');

  async function call(route: Record<string, unknown>, env: Record<string, unknown>, name = 'echo') {
    const config = { routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/never', resource, authorization_servers: [bench.issuer.issuer], tools: listedTools(), ...route }] };
    const token = await bench.issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1' });
    const request = new Request(resource, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify(toolCall(name, { amount: 5 })) });
    const { response, body, event } = await callWorker(request, { MANDATE_GATEWAY_CONFIG: JSON.stringify(config), ...env }, lines);
    assert.ok(event && body.error, `an audit line: ${response.status} ${JSON.stringify(body)}`);
    return { response, body: body as { error: { code: number } }, event };
  }

  it('revocation list object unreachable: 503 revocation_list_unavailable, with the reason', async () => {
    const { response, body, event } = await call({ token: { revocation_list: { client_id: 'gateway', client_secret_env: 'REVOCATION_SECRET' } } }, { GATEWAY_STATE: unreachable, REVOCATION_SECRET: 's' });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '1');
    assert.equal(body.error.code, -32603);
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'revocation_list_unavailable');
    assert.equal(event.reason, "the revocation list's Durable Object cannot be read: Durable Object reset because its code was updated");
  });

  it('approval object unreachable: 503 approval_unavailable, with the reason', async () => {
    const { response, body, event } = await call(
      { tools: { ...listedTools(), transfer: { approval: 'required' } }, approvals: { client_id: 'gateway', client_secret_env: 'APPROVALS_SECRET', retry_check: true } },
      { GATEWAY_STATE: unreachable, APPROVALS_SECRET: 's' },
      'transfer',
    );
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '5');
    assert.equal(body.error.code, -32603);
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'approval_unavailable');
    assert.equal(event.reason, 'approval store unavailable: Durable Object reset because its code was updated');
  });

  it('an audit shard that cannot be reached: the console line is written, the event kept in the isolate and sent with the next one; arguments hashed', async () => {
    let reachable = false;
    const received: Record<string, unknown>[][] = [];
    const flaky: DurableNamespace = {
      idFromName: (name) => name,
      get: (id) => ({
        fetch: async (_input, init) => {
          if (!reachable) throw new Error('Network connection lost.');
          assert.match(String(id), /^audit:[0-3]$/);
          received.push((JSON.parse(String(init!.body)) as { events: Record<string, unknown>[] }).events);
          return Response.json({});
        },
      }),
    };
    // No token needed: a refusal is audited too (and touches no other object).
    const config = { routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/never', resource, authorization_servers: [bench.issuer.issuer], tools: listedTools() }] };
    const env = { MANDATE_GATEWAY_CONFIG: JSON.stringify(config), GATEWAY_STATE: flaky, AUDIT_SINK_URL: 'https://sink.test/in' };
    const send = async () => {
      const waits: Promise<unknown>[] = [];
      const response = await worker.fetch(new Request(resource, { method: 'POST', headers: MCP_HEADERS, body: JSON.stringify(toolCall('echo', { secret: 'never-logged' })) }), env, { waitUntil: (promise) => void waits.push(promise) });
      assert.equal(response.status, 401);
      assert.equal(waits.length, 1, 'the request waits for its event to be handed over');
      await Promise.all(waits);
      return response.headers.get('x-request-id')!;
    };
    const first = await send();
    const line = lines.map((text) => JSON.parse(text) as Record<string, unknown>).find((e) => e.request_id === first)!;
    assert.equal(line.arguments, undefined);
    assert.match(String(line.args_sha256), /^[0-9a-f]{64}$/);
    assert.equal(received.length, 0);
    reachable = true;
    const second = await send();
    assert.deepEqual(received.flat().map((event) => event.request_id), [first, second], 'the kept event goes with the next one, in order');
    assert.ok(!JSON.stringify(received).includes('never-logged'));
  });
});
