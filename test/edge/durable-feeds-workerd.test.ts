/**
 * Revocations, audit and held approvals in the `GatewayState` Durable Object, in workerd (issue 16):
 * the Worker bundle in two isolates (`--instances 2`, sharing the first one's objects) with the
 * objects persisted to a directory. The revocation feed is polled by one object, not by each isolate;
 * a call held for approval through one isolate goes through once when retried through the other; the
 * audit events reach an HTTP sink in batches, and a sink that fails — even across a restart of
 * workerd — loses none. Loopback only, bounded in time; workerd is stopped at the end.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { EDGE_SKIP_REASON, edgeAvailable, startPersistedGateway, type PersistedGateway } from '../helpers/edge-worker.ts';
import { startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const POLL_SECONDS = 2;
const SINK_TOKEN = 'sink-token-for-the-test';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls `probe` until it gives a value, for at most `ms`. */
async function until<T>(probe: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms: ${what}`);
    await sleep(100);
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((done) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => done(body));
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('revocations, audit and held approvals in the Durable Object, in workerd', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: PersistedGateway | undefined;
  /** The first isolate's origin, and the second's (its own loopback port). */
  let first: string;
  let second: string;

  // The AS's revocation list: the polls it answered (when, with what Authorization), what is revoked.
  const polls: { at: number; url: string; auth: string }[] = [];
  const revoked: { jti: string; exp: number }[] = [];
  let revocations: Server;
  let revocationsUrl: string;

  // The audit sink: every POST (answered `sinkStatus`), with its events.
  const posts: { status: number; auth: string; events: Record<string, unknown>[] }[] = [];
  let sinkStatus = 200;
  let sink: Server;
  let sinkUrl: string;

  const auditLines = () =>
    (gateway?.stdout() ?? '')
      .split('\n')
      .filter((line) => line.includes('"audit":"mandate-gateway"'))
      .map((line) => JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>);
  const auditFor = (requestId: string | null) => until(() => auditLines().find((event) => event.request_id === requestId), 5_000, `the audit line of ${requestId}`);

  async function start(): Promise<void> {
    await gateway!.start();
    [first, second] = gateway!.urls() as [string, string];
  }

  before(async () => {
    issuer = await startFakeIssuer();
    as = await startFakeTransactionsAs();
    upstream = await startScriptedUpstream();
    revocations = createServer((req, res) => {
      polls.push({ at: Date.now(), url: req.url ?? '', auth: req.headers.authorization ?? '' });
      if (req.url?.startsWith('/down')) return void res.writeHead(500).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ next_since: Math.floor(Date.now() / 1000), tokens: revoked, grants: [], clients: [] }));
    });
    revocationsUrl = await listen(revocations);
    sink = createServer((req, res) => {
      void readBody(req).then((body) => {
        posts.push({ status: sinkStatus, auth: req.headers.authorization ?? '', events: JSON.parse(body) as Record<string, unknown>[] });
        res.writeHead(sinkStatus).end();
      });
    });
    sinkUrl = await listen(sink);

    const feed = (path: string) => ({ endpoint: `${revocationsUrl}${path}`, client_id: 'gateway', client_secret_env: 'REVOCATION_SECRET', poll_seconds: POLL_SECONDS });
    const mcp = (origin: string, path: string, listPath: string) => ({ path, upstream: upstream.url, resource: `${origin}${path}`, authorization_servers: [issuer.issuer], tools: listedTools(), token: { revocation_list: feed(listPath) } });
    const bindings = ['REVOCATION_SECRET=rev-secret', 'APPROVALS_SECRET=gw-secret', `AUDIT_SINK_URL=${sinkUrl}/events`, `AUDIT_SINK_TOKEN=${SINK_TOKEN}`, 'AUDIT_SINK_BATCH_SIZE=3', 'AUDIT_SINK_BATCH_SECONDS=1'];
    gateway = await startPersistedGateway(
      (origin) => [
        mcp(origin, '/mcp', '/revocations'),
        // A feed whose AS always fails: no list is ever loaded.
        mcp(origin, '/down', '/down/revocations'),
        {
          path: '/bank',
          upstream: upstream.url,
          resource: `${origin}/bank`,
          authorization_servers: [as.issuer],
          tools: { ...listedTools(), transfer: { approval: { when: 'args.amount > 100' } } },
          approvals: { client_id: 'gateway', client_secret_env: 'APPROVALS_SECRET', retry_check: true },
        },
      ],
      { bindings, prefix: 'mandate-edge-feeds-' },
    );
    [first, second] = gateway.urls() as [string, string];
  });

  after(async () => {
    await gateway?.dispose();
    await upstream?.close();
    await issuer?.close();
    await as?.close();
    revocations?.close();
    revocations?.closeAllConnections();
    sink?.close();
    sink?.closeAllConnections();
  });

  const token = (sub: string, path = '/mcp') => issuer.sign({ sub, aud: `${gateway!.origin}${path}`, client_id: 'agent-1' });
  const call = async (origin: string, jwt: string, path = '/mcp', args: Record<string, unknown> = {}) => mcpPost(`${origin}${path}`, toolCall('echo', args), { authorization: `Bearer ${jwt}` });

  it('the revocation list: one poller for both isolates, at most once per poll_seconds; a revocation at the AS refuses the token through both after a poll; 503 until a list is loaded', async () => {
    const startedAt = Date.now();
    const alice = await token('alice');
    const bob = await token('bob');
    const mainPolls = () => polls.filter((poll) => poll.url.startsWith('/revocations'));
    // Both isolates, several times: each reads the list from the one object.
    for (let i = 0; i < 3; i++) {
      for (const origin of [first, second]) {
        const res = await call(origin, alice);
        assert.equal(res.status, 200, res.text);
      }
    }
    const elapsed = Date.now() - startedAt;
    // Polled by the object on its alarm: at most one poll per interval since the first, whatever the isolates.
    assert.ok(mainPolls().length >= 1);
    assert.ok(mainPolls().length <= 1 + Math.floor((elapsed + 100) / (POLL_SECONDS * 1000)), `${mainPolls().length} polls in ${elapsed} ms, by ${POLL_SECONDS} s`);
    assert.equal(mainPolls()[0]!.auth, `Basic ${Buffer.from('gateway:rev-secret').toString('base64')}`, 'the object polls with the secret it read from its own binding');

    // The AS revokes alice's token.
    const jti = JSON.parse(Buffer.from(alice.split('.')[1]!, 'base64url').toString()) as { jti: string; exp: number };
    const pollsBefore = mainPolls().length;
    revoked.push({ jti: jti.jti, exp: jti.exp });
    const refused = await until(async () => {
      const res = await call(first, alice);
      return res.status === 401 ? res : undefined;
    }, 15_000, 'the revocation reaching the first isolate');
    assert.ok(mainPolls().length > pollsBefore, 'refused after a poll of the AS');
    assert.match(refused.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    assert.equal((refused.json!.error as { code: number }).code, -32001);
    const event = await auditFor(refused.headers.get('x-request-id'));
    assert.equal(event.rejection, 'invalid_token');
    assert.equal(event.reason, 'the token was revoked');
    assert.equal(event.sub, undefined);
    // The second isolate's copy of the list is at most ISOLATE_LIST_MS (1 s) old.
    const refusedToo = await until(async () => {
      const res = await call(second, alice);
      return res.status === 401 ? res : undefined;
    }, 5_000, 'the revocation reaching the second isolate');
    assert.equal((await auditFor(refusedToo.headers.get('x-request-id'))).reason, 'the token was revoked');
    for (const origin of [first, second]) assert.equal((await call(origin, bob)).status, 200, 'another token still passes');

    const total = Date.now() - startedAt;
    assert.ok(mainPolls().length <= 1 + Math.floor((total + 100) / (POLL_SECONDS * 1000)), `${mainPolls().length} polls in ${total} ms, by ${POLL_SECONDS} s: one poller`);

    // Fail closed: a feed whose AS answers 500 never loads; every call is refused, with the reason.
    const down = await call(second, await token('alice', '/down'), '/down');
    assert.equal(down.status, 503, down.text);
    assert.equal((down.json!.error as { code: number }).code, -32603);
    assert.equal(down.headers.get('retry-after'), '1');
    const downEvent = await auditFor(down.headers.get('x-request-id'));
    assert.equal(downEvent.rejection, 'revocation_list_unavailable');
    assert.match(String(downEvent.reason), /^the revocation list has not been loaded yet \(last poll: revocation list .*\/down\/revocations answered 500\)$/);
    assert.equal(upstream.requests.filter((request) => request.url === '/down').length, 0);
  });

  it('a call held for approval through one isolate, approved at the AS, retried through the other, goes through once', async () => {
    const bearer = async () => `Bearer ${await as.sign({ aud: `${gateway!.origin}/bank`, sub: 'alice', client_id: 'sample-agent', act: { sub: 'sample-agent' } })}`;
    const transfer = async (origin: string) => mcpPost(`${origin}/bank`, toolCall('transfer', { amount: 250, to: 'edge-retry' }), { authorization: await bearer(), 'mcp-protocol-version': '2025-11-25' });
    const forwarded = () => upstream.requests.filter((request) => request.body.includes('"transfer"') && request.body.includes('edge-retry')).length;
    const idOf = (res: { json?: Record<string, unknown> }) => (res.json!.error as { code: number; data: { elicitations: { elicitationId: string }[] } }).data.elicitations[0]!.elicitationId;

    const held = await transfer(first);
    assert.equal(held.status, 200, `${held.text} ${JSON.stringify(await auditFor(held.headers.get('x-request-id')))}`);
    assert.equal((held.json!.error as { code: number }).code, -32042, held.text);
    const id = idOf(held);
    const again = await transfer(second);
    assert.equal(idOf(again), id, 'the other isolate answers with the transaction the first one created');
    assert.equal(as.callsTo('create').length, 1, 'one transaction at the AS');
    assert.equal(forwarded(), 0);

    as.approve(id);
    const passed = await transfer(second);
    assert.equal(passed.status, 200, passed.text);
    assert.ok(passed.json!.result, passed.text);
    assert.equal(forwarded(), 1);
    assert.deepEqual(as.granted, [id]);
    const event = await auditFor(passed.headers.get('x-request-id'));
    assert.equal(event.decision, 'allow');
    assert.equal(event.tool, 'transfer');

    // Spent: the same call through the first isolate is not forwarded again on that approval.
    const twice = await transfer(first);
    assert.equal(forwarded(), 1, twice.text);
    assert.deepEqual(as.granted, [id]);
  });

  it('audit events reach the sink in batches of at most AUDIT_SINK_BATCH_SIZE, with the bearer token and hashed arguments; a sink answering 500, then restarted workerd, then 200, loses none', async () => {
    const alice = await token('carol');
    const okBefore = posts.filter((post) => post.status === 200).flatMap((post) => post.events.map((e) => e.request_id));
    // Whatever the earlier tests sent arrives too: wait for it, then start from a clean count.
    await until(() => (auditLines().every((line) => okBefore.includes(line.request_id) || posts.some((post) => post.status === 200 && post.events.some((e) => e.request_id === line.request_id))) ? true : undefined), 20_000, 'the earlier events delivered');

    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await call(first, alice, '/mcp', { n: i, secret: 'not-in-the-audit' });
      assert.equal(res.status, 200, res.text);
      ids.push(res.headers.get('x-request-id')!);
    }
    // A streamed answer: its event is written at the stream's end, after the response began.
    const streamed = await mcpPost(`${second}/mcp`, toolCall('stream', {}), { authorization: `Bearer ${alice}` });
    assert.equal(streamed.status, 200, streamed.text);
    assert.match(streamed.text, /streamed/);
    ids.push(streamed.headers.get('x-request-id')!);
    const delivered = () => new Set(posts.filter((post) => post.status === 200).flatMap((post) => post.events.map((event) => String(event.request_id))));
    await until(() => (ids.every((id) => delivered().has(id)) ? true : undefined), 15_000, `the five events delivered, the streamed one too: ${JSON.stringify(posts)}\n${gateway?.stdout()}`);
    const batches = posts.filter((post) => post.events.some((event) => ids.includes(String(event.request_id))));
    assert.ok(batches.every((post) => post.events.length <= 3), `batches: ${batches.map((post) => post.events.length).join(', ')}`);
    assert.ok(batches.some((post) => post.events.length > 1), `batched, not one post per event: ${batches.map((post) => post.events.length).join(', ')}`);
    assert.ok(batches.every((post) => post.auth === `Bearer ${SINK_TOKEN}`));
    const streamEvent = batches.flatMap((post) => post.events).find((event) => event.request_id === ids[4])!;
    assert.equal(streamEvent.tool, 'stream');
    assert.equal(streamEvent.outcome, 'result', 'audited at the end of the stream, with its outcome');
    const sent = batches.flatMap((post) => post.events).find((event) => event.request_id === ids[0])!;
    assert.equal(sent.audit, 'mandate-gateway');
    assert.equal(sent.sub, 'carol');
    assert.equal(sent.tool, 'echo');
    assert.equal(sent.arguments, undefined, 'never the arguments');
    assert.match(String(sent.args_sha256), /^[0-9a-f]{64}$/);
    assert.ok(!JSON.stringify(posts).includes('not-in-the-audit'));

    // The sink fails: the events stay in the objects' storage, retried; workerd restarts meanwhile.
    sinkStatus = 500;
    const failedBefore = posts.filter((post) => post.status === 500).length;
    const lost: string[] = [];
    // No more than AUDIT_SINK_BATCH_SIZE (3): a failing shard retries its oldest batch only, so with
    // more, those beyond the first batch of a shard that drew most of them (shards are chosen at
    // random) would never be refused before the restart, and the wait below would time out.
    for (let i = 0; i < 3; i++) {
      const res = await call(i % 2 ? second : first, alice, '/mcp', { n: i });
      assert.equal(res.status, 200, res.text);
      lost.push(res.headers.get('x-request-id')!);
    }
    // Every one of them refused at least once: each is in a shard's storage (a shard sends only what
    // it stored) and its shard has armed its retry, before workerd stops.
    const refused = () => new Set(posts.filter((post) => post.status === 500).flatMap((post) => post.events.map((event) => String(event.request_id))));
    await until(() => (posts.filter((post) => post.status === 500).length > failedBefore && lost.every((id) => refused().has(id)) ? true : undefined), 30_000, 'each event refused by the sink once');
    await gateway!.stop();
    // The sink is back by the time workerd is: the events refused before the restart must come from
    // the objects' storage. (Set after the restart, every try the shards made while workerd started
    // on a loaded machine doubled their backoff — 64 s, 128 s — and the wait below raced it.)
    sinkStatus = 200;
    await start();
    // Each shard retries on its own backoff (1 s, 2 s, 4 s… from its failures before the restart).
    await until(() => (lost.every((id) => delivered().has(id)) ? true : undefined), 180_000, `the events kept through the failures and the restart: ${lost.filter((id) => !delivered().has(id)).join(', ')}`);
    const refusedIds = posts.filter((post) => post.status === 500).flatMap((post) => post.events.map((event) => String(event.request_id)));
    assert.ok(refusedIds.every((id) => delivered().has(id)), 'every event the sink refused came again and was accepted');
    assert.ok(posts.every((post) => post.events.length <= 3));
  });
});
