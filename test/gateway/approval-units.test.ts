import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApprovalMemory, displayDetails, renderSummary } from '../../src/gateway/approvals.ts';
import { RequestStates } from '../../src/gateway/request-state.ts';
import { TransactionClient, TransactionsUnavailable } from '../../src/gateway/transactions.ts';

describe('approval parts', () => {
  it('summary: placeholders replaced, values cleaned and cut at 80, the whole at 200', () => {
    assert.equal(renderSummary('Transfer {amount} EUR to {to}', 'transfer', { amount: 250.5, to: 'Bob' }, {}), 'Transfer 250.5 EUR to Bob');
    assert.equal(renderSummary('Pay {to} {missing} {obj}', 't', { to: 'A\u200B\u202Eb\r\nc', obj: { a: [1] } }, {}), 'Pay A\\u{200B}\\u{202E}b c (none) {"a":[1]}');
    const long = renderSummary('{a}', 't', { a: 'x'.repeat(500) }, {});
    assert.equal([...long].length, 80);
    assert.ok(long.endsWith('…'));
    const whole = renderSummary('{a} {a} {a} {a}', 't', { a: 'y'.repeat(90) }, {});
    assert.equal([...whole].length, 200);
    assert.equal(renderSummary(undefined, 'transfer', { amount: 1, to: 'Bob', memo: 'm' }, { amount: 1, to: 'Bob' }), 'Call transfer with amount=1, to=Bob');
    assert.equal(renderSummary(undefined, 'ping', {}, {}), 'Call ping');
    assert.equal(renderSummary('{__proto__}{constructor}', 't', {}, {}), '(none)(none)', 'only own arguments');
  });

  it('transaction client: only the AS\'s JSON record of this use counts as used; any other 200 is the AS unavailable', async () => {
    const hash = 'h'.repeat(43);
    const answering = (status: number, body: string, type = 'application/json') =>
      new TransactionClient({ issuer: 'http://as.test', clientId: 'gw', clientSecret: 's', fetch: async () => new Response(body, { status, headers: { 'content-type': type } }) });
    assert.deepEqual(await answering(200, JSON.stringify({ id: 'tx1', status: 'used', arguments_hash: hash })).use('tx1', 'token', hash), { status: 'used' });
    for (const [status, body, type] of [
      [200, '<html>maintenance</html>', 'text/html'],
      [200, '{}', undefined],
      [200, JSON.stringify({ id: 'tx2', status: 'used', arguments_hash: hash }), undefined],
      [200, JSON.stringify({ id: 'tx1', status: 'used', arguments_hash: 'g'.repeat(43) }), undefined],
      [200, JSON.stringify({ id: 'tx1', status: 'approved', arguments_hash: hash }), undefined],
      [204, '', undefined],
    ] as const) {
      await assert.rejects(answering(status, body, type).use('tx1', 'token', hash), TransactionsUnavailable, `${status} ${body}`);
    }
    const created = { id: 'tx1', approval_uri: 'http://as.test/approve/tx1', expires_at: 1 };
    assert.deepEqual(await answering(201, JSON.stringify(created)).create({ subjectToken: 't', tool: 'x', argumentsHash: hash, summary: 's', details: {}, lifetimeSeconds: 60 }), { id: 'tx1', approvalUri: 'http://as.test/approve/tx1', expiresAt: 1 });
    for (const [status, body] of [
      [200, JSON.stringify(created)],
      [201, '<html>ok</html>'],
      [201, JSON.stringify({ ...created, approval_uri: 'http://evil.test/approve/tx1' })],
      [201, JSON.stringify({ ...created, expires_at: 'soon' })],
    ] as const) {
      await assert.rejects(answering(status, body).create({ subjectToken: 't', tool: 'x', argumentsHash: hash, summary: 's', details: {}, lifetimeSeconds: 60 }), TransactionsUnavailable, `${status} ${body}`);
    }
  });

  it('summary and details: hidden characters are shown as \\u{…}, never deleted, so another string never reads the same', () => {
    const template = 'Transfer {amount} EUR to {to}';
    const real = renderSummary(template, 'transfer', { amount: 250, to: 'Bob' }, {});
    const spoof = renderSummary(template, 'transfer', { amount: 250, to: '\u200bBob\u2060' }, {});
    assert.equal(real, 'Transfer 250 EUR to Bob');
    assert.equal(spoof, 'Transfer 250 EUR to \\u{200B}Bob\\u{2060}');
    assert.equal(renderSummary(undefined, 'transfer', {}, { 't\u00ado': 'B\ufe0fob\u3164' }), 'Call transfer with t\\u{AD}o=B\\u{FE0F}ob\\u{3164}', 'soft hyphen, variation selector, filler');
    assert.deepEqual(displayDetails({ to: 'NL91\u202eBAN0', line: 'a\u2028b\nc', half: 'x\ud800', n: 1, list: ['\u200b', { 'k\u2066': null }], ok: 'café 😀' }), {
      to: 'NL91\\u{202E}BAN0',
      line: 'a\\u{2028}b\\u{A}c',
      half: 'x\\u{D800}',
      n: 1,
      list: ['\\u{200B}', { 'k\\u{2066}': null }],
      ok: 'café 😀',
    });
  });

  it('requestState: opens for the same caller only; tampering and another caller are invalid; no prefix is not ours', async () => {
    const states = new RequestStates('secret');
    const pending = { id: 'tx1', url: 'http://as/approve/tx1', expiresAt: 123 };
    const state = await states.seal(['/mcp', 'alice', 'agent'], pending);
    assert.deepEqual(await states.open(['/mcp', 'alice', 'agent'], state), pending);
    assert.deepEqual(await new RequestStates('secret').open(['/mcp', 'alice', 'agent'], state), pending, 'another gateway with the same secret');
    assert.equal(await new RequestStates('other').open(['/mcp', 'alice', 'agent'], state), 'invalid');
    assert.equal(await states.open(['/mcp', 'bob', 'agent'], state), 'invalid');
    assert.equal(await states.open(['/mcp', 'alice', 'other'], state), 'invalid');
    assert.equal(await states.open(['/other', 'alice', 'agent'], state), 'invalid');
    assert.equal(await states.open(['/mcp', 'alice', 'agent'], `${state}x`), 'invalid');
    assert.equal(await states.open(['/mcp', 'alice', 'agent'], 'mgw1.!!.??'), 'invalid');
    assert.equal(await states.open(['/mcp', 'alice', 'agent'], 'upstream-state'), undefined);
  });

  it('memory store: entries lapse with their TTL and the size is bounded', async () => {
    const store = new ApprovalMemory(2);
    const p = (id: string) => ({ id, url: `http://as/approve/${id}`, expiresAt: 0 });
    store.remember('a', p('a'), 20);
    store.remember('b', p('b'), 10_000);
    store.remember('c', p('c'), 10_000);
    assert.equal(store.recall('a'), undefined, 'the oldest was evicted');
    assert.equal(store.recall('b')?.id, 'b');
    store.remember('d', p('d'), 20);
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.equal(store.recall('d'), undefined);
    store.forget('c');
    assert.equal(store.recall('c'), undefined);
  });

  it('memory store: the first remembered transaction of a call is kept and returned to a second one', () => {
    const store = new ApprovalMemory();
    const p = (id: string) => ({ id, url: `http://as/approve/${id}`, expiresAt: 0 });
    assert.equal(store.remember('k', p('first'), 10_000).id, 'first');
    assert.equal(store.remember('k', p('second'), 10_000).id, 'first');
    assert.equal(store.recall('k')?.id, 'first');
    store.forget('k');
    assert.equal(store.remember('k', p('third'), 10_000).id, 'third', 'after a forget (denied, expired), a new one is kept');
  });
});
