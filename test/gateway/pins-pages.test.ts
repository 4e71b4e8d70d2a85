import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { LIST_TRUST_SECONDS } from '../../src/auth-server/tool-pins/pins.ts';
import { pinnedDefinition, toolHash } from '../../src/core/tool-hash.ts';
import { LISTING_WINDOW_MS, PinBook } from '../../src/gateway/pins/book.ts';
import { PinClient } from '../../src/gateway/pins/client.ts';
import { basic, clientCredentialsTokens, freePort, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { mcpPost, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * Issue 18 follow-up: trust on first use across the pages of one paginated `tools/list`
 * (`nextCursor`). The pages a caller follows from the first page's cursor, at once, share the
 * listing's `list_id` at the AS, which trusts them while every pin of the resource is that
 * listing's (and recent). The attack bounded: an upstream adding a tool later as "a later page" —
 * a later listing, another caller's cursor, a cursor used before or followed too late — gets `new`.
 */
const GATEWAY_SECRET = 'pages-gateway-secret-0123456789abcdef012';
const AGENT_SECRET = 'pages-agent-secret-0123456789abcdef01234';
const OTHER_SECRET = 'pages-other-secret-0123456789abcdef01234';
const R = { pages: 'https://pages.pins.test/mcp', other: 'https://other.pins.test/mcp', window: 'https://window.pins.test/mcp' };

const tool = (name: string) => ({ name, description: `The ${name} tool.`, inputSchema: { type: 'object' } });

/** An upstream answering tools/list in pages (cursor `p<n>`); the test changes the pages. */
async function startPagedUpstream() {
  const pages = [[tool('alpha'), tool('beta')], [tool('gamma')], [tool('delta')]];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      const message = JSON.parse(body || '{}') as { id?: number; method?: string; params?: { name?: string; cursor?: string } };
      if (message.id === undefined) return void res.writeHead(202).end();
      const reply = (result: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      if (message.method === 'tools/list') {
        const index = message.params?.cursor ? Number(message.params.cursor.slice(1)) : 0;
        return reply({ tools: pages[index] ?? [], ...(index + 1 < pages.length ? { nextCursor: `p${index + 1}` } : {}) });
      }
      if (message.method === 'tools/call') return reply({ content: [{ type: 'text', text: `called ${message.params?.name}` }] });
      reply({});
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}/`, pages, close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())) };
}

describe('tool pinning: trust on first use across the pages of one listing', () => {
  it('PinBook.pageListing: a first page with nextCursor starts a listing; its cursor continues it once, for the same caller, within the window', () => {
    let now = 1_000_000;
    const book = new PinBook({} as PinClient, { cacheSeconds: 300, negativeCacheSeconds: 5 }, () => now);
    assert.equal(book.pageListing('alice', undefined, undefined), undefined, 'one page: no listing');
    const listing = book.pageListing('alice', undefined, 'c1');
    assert.match(listing!, /^[A-Za-z0-9]{32}$/);
    assert.equal(book.pageListing('bob', 'c1', 'c2'), undefined, "another caller's cursor continues nothing");
    assert.equal(book.pageListing('alice', 'c1', 'c2'), listing, 'the cursor it gave, same caller');
    assert.equal(book.pageListing('alice', 'c1', undefined), undefined, 'a cursor is used once');
    assert.equal(book.pageListing('alice', 'forged', undefined), undefined, 'a cursor this route never gave');
    now += LISTING_WINDOW_MS - 1;
    assert.equal(book.pageListing('alice', 'c2', 'c3'), listing, 'the last page within the window');
    now += 1;
    assert.equal(book.pageListing('alice', 'c3', undefined), undefined, 'at the end of the window from the first page: judged alone');
    assert.notEqual(book.pageListing('alice', undefined, 'c1'), listing, 'a new first page is a new listing');
  });

  describe('with a Mandate AS and the gateway', () => {
    let as: TestAuthServer;
    let upstream: Awaited<ReturnType<typeof startPagedUpstream>>;
    let gateway: TestGateway;

    before(async () => {
      process.env.TEST_PAGES_GATEWAY = GATEWAY_SECRET;
      process.env.TEST_PAGES_AGENT = AGENT_SECRET;
      process.env.TEST_PAGES_OTHER = OTHER_SECRET;
      as = await startTestAuthServer({
        clients: [
          { client_id: 'pages-gateway', client_name: 'Pinning gateway', client_secret_env: 'TEST_PAGES_GATEWAY', grant_types: ['client_credentials'], tool_pins: 'allowed' },
          { client_id: 'pages-agent', client_name: 'Agent', client_secret_env: 'TEST_PAGES_AGENT', grant_types: ['client_credentials'] },
          { client_id: 'pages-other', client_name: 'Other agent', client_secret_env: 'TEST_PAGES_OTHER', grant_types: ['client_credentials'] },
        ],
        resources: Object.entries(R).map(([name, id]) => ({ id, name: `Pages ${name}`, scopes: [{ name: `${name}:use` }], resource_servers: ['pages-gateway'] })),
      });
      upstream = await startPagedUpstream();
      const route = (path: string, resource: string) => ({
        path,
        upstream: upstream.url,
        resource,
        authorization_servers: [as.issuer],
        tools: { alpha: {}, beta: {}, gamma: {}, delta: {}, epsilon: {} },
        tool_pins: { client_id: 'pages-gateway', client_secret_env: 'TEST_PAGES_GATEWAY', negative_cache_seconds: 0 },
      });
      gateway = await startTestGateway(() => [route('/mcp', R.pages), route('/other', R.other)], {}, { ...process.env });
    });
    after(async () => {
      await gateway?.close();
      await upstream?.close();
      await as?.close();
    });

    let clients: Record<'pages-agent' | 'pages-other', (resource: string) => Promise<string>> | undefined;
    const tokenFor = (client: 'pages-agent' | 'pages-other', resource: string) =>
      (clients ??= { 'pages-agent': clientCredentialsTokens(as.issuer, 'pages-agent', AGENT_SECRET), 'pages-other': clientCredentialsTokens(as.issuer, 'pages-other', OTHER_SECRET) })[client](resource);
    let nextId = 1;
    const post = async (path: string, resource: string, message: unknown, client: 'pages-agent' | 'pages-other' = 'pages-agent') => {
      const res = await mcpPost(`${gateway.url}${path}`, message, { authorization: `Bearer ${await tokenFor(client, resource)}` });
      const event = (await gateway.auditEvents()).find((e) => e.request_id === res.headers.get('x-request-id'))!;
      return { ...res, event };
    };
    const page = async (path: string, resource: string, cursor?: string, client?: 'pages-agent' | 'pages-other') => {
      const res = await post(path, resource, { jsonrpc: '2.0', id: nextId++, method: 'tools/list', ...(cursor ? { params: { cursor } } : {}) }, client);
      assert.equal(res.status, 200, res.text);
      const result = res.json!.result as { tools: { name: string }[]; nextCursor?: string };
      return { names: result.tools.map((t) => t.name), nextCursor: result.nextCursor, event: res.event };
    };
    const pins = async (resource: string) => new Map((await as.store.toolPins.list({ resource, limit: 100 })).map((pin) => [pin.tool, pin]));

    it('a first listing in three pages is trusted on first use as a whole: every tool pinned, by one listing', async () => {
      const first = await page('/mcp', R.pages);
      assert.deepEqual([first.names, first.nextCursor, first.event.tool_pins], [['alpha', 'beta'], 'p1', undefined]);
      const second = await page('/mcp', R.pages, first.nextCursor);
      assert.deepEqual([second.names, second.nextCursor, second.event.tool_pins], [['gamma'], 'p2', undefined]);
      const third = await page('/mcp', R.pages, second.nextCursor);
      assert.deepEqual([third.names, third.nextCursor, third.event.tool_pins], [['delta'], undefined, undefined]);
      const pinned = await pins(R.pages);
      assert.deepEqual([...pinned.keys()].sort(), ['alpha', 'beta', 'delta', 'gamma']);
      assert.equal(new Set([...pinned.values()].map((pin) => `${pin.status} ${pin.approvedBy}`)).size, 1, 'one listing pinned them all');
      assert.match(pinned.get('delta')!.approvedBy!, /^first_use:[A-Za-z0-9]{32}$/);
      const call = await post('/mcp', R.pages, toolCall('delta', {}, nextId++));
      assert.equal(call.status, 200, call.text);
    });

    it('the attack: a tool the upstream adds later "on a later page" is new — hidden, its call refused (403, -32003, tool_pin_new)', async () => {
      upstream.pages[2]!.push(tool('epsilon'));
      try {
        const first = await page('/mcp', R.pages);
        const second = await page('/mcp', R.pages, first.nextCursor);
        const third = await page('/mcp', R.pages, second.nextCursor);
        assert.deepEqual(third.names, ['delta']);
        assert.deepEqual(third.event.tool_pins, { new: ['epsilon'], hidden: ['epsilon'] });
        assert.equal((await pins(R.pages)).get('epsilon')!.status, 'new');
        const call = await post('/mcp', R.pages, toolCall('epsilon', {}, nextId++));
        assert.equal(call.status, 403, call.text);
        const error = call.json!.error as { code: number; data: unknown };
        assert.equal(error.code, -32003);
        assert.deepEqual(error.data, { tool: 'epsilon', pin: 'new' });
        assert.equal(call.event.rejection, 'tool_pin_new');
        assert.match(String(call.event.reason), /^tool epsilon: definition [A-Za-z0-9_-]{43} is new, none approved/);
      } finally {
        upstream.pages[2]!.pop();
      }
    });

    it("a first listing's later page asked with another caller's cursor is not part of it: its tools are new", async () => {
      const first = await page('/other', R.other);
      assert.deepEqual([first.names, first.event.tool_pins], [['alpha', 'beta'], undefined]);
      // Another agent asks for the page after it with the cursor it never got from this gateway.
      const stolen = await page('/other', R.other, first.nextCursor, 'pages-other');
      assert.deepEqual([stolen.names, stolen.event.tool_pins], [[], { new: ['gamma'], hidden: ['gamma'] }]);
      // So does the caller itself with a cursor it was never given.
      const skipped = await page('/other', R.other, 'p2');
      assert.deepEqual([skipped.names, skipped.event.tool_pins], [[], { new: ['delta'], hidden: ['delta'] }]);
    });

    it('the AS trusts a listing only while all the resource\'s pins are its own and recent (LIST_TRUST_SECONDS)', async () => {
      const client = new PinClient({ issuer: as.issuer, clientId: 'pages-gateway', clientSecret: GATEWAY_SECRET, resource: R.window, firstUse: 'pin' });
      const report = async (names: string[], listId: string) => client.check(await Promise.all(names.map(async (name) => ({ name, definition: pinnedDefinition(tool(name))! }))), listId);
      assert.equal((await report(['alpha'], 'listA')).get('alpha')!.verdict, 'pinned', 'first use');
      assert.equal((await report(['beta'], 'listA')).get('beta')!.verdict, 'pinned', 'the same listing, at once');
      assert.equal((await report(['gamma'], 'listB')).get('gamma')!.verdict, 'new', 'another listing');
      // Listing C's only pin is from longer ago than the window (as if its first page had been listed then;
      // under upstream "late", so that the pins above do not count): a page of C now is judged alone.
      const at = Math.floor(Date.now() / 1000) - LIST_TRUST_SECONDS - 5;
      const definition = pinnedDefinition(tool('old'))!;
      assert.ok(await as.store.toolPins.insert({ resource: R.window, upstream: 'late', tool: 'old', status: 'pinned', approvedHash: await toolHash(definition), approvedDefinition: definition, firstSeen: at, approvedBy: 'first_use:listC', approvedAt: at, reportedBy: 'pages-gateway' }));
      const late = await fetch(`${as.issuer}/tool-pins`, {
        method: 'POST',
        headers: { authorization: basic('pages-gateway', GATEWAY_SECRET), 'content-type': 'application/json' },
        body: JSON.stringify({ resource: R.window, upstream: 'late', list_id: 'listC', tools: [{ name: 'later', definition: pinnedDefinition(tool('later')) }] }),
      });
      assert.equal(late.status, 200);
      assert.deepEqual(((await late.json()) as { tools: { name: string; verdict: string }[] }).tools.map((t) => [t.name, t.verdict]), [['later', 'new']]);
    });
  });
});
