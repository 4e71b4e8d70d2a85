import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { RevocationList } from '../../src/gateway/revocation-list.ts';
import { freePort } from '../helpers/auth-server.ts';

describe('gateway revocation list', () => {
  it('refuses revoked jtis, revoked grants and tokens whose client or any actor is disabled, expired or cut off; fails closed until loaded; keeps the last list when a poll fails', async () => {
    const now = Math.floor(Date.now() / 1000);
    let answer: unknown = {
      next_since: now - 10,
      tokens: [{ jti: 'revoked-1', exp: now + 60 }],
      grants: [{ grant_id: 'grant-1', revoked_at: now, until: now + 900 }],
      clients: [
        { client_id: 'disabled-agent', disabled_at: now - 10, tokens_valid_after: null, expired_at: null },
        { client_id: 'old-agent', disabled_at: null, tokens_valid_after: null, expired_at: now - 5 },
        { client_id: 'reset-agent', disabled_at: null, tokens_valid_after: now - 100, expired_at: null },
      ],
    };
    const requests: { url: string; auth: string; ifNoneMatch?: string }[] = [];
    const server = createServer((req, res) => {
      requests.push({ url: req.url!, auth: req.headers.authorization ?? '', ifNoneMatch: req.headers['if-none-match'] });
      if (answer === undefined) return void res.writeHead(500).end();
      if (req.headers['if-none-match'] === '"v1"') return void res.writeHead(304).end();
      res.writeHead(200, { 'content-type': 'application/json', etag: '"v1"' }).end(JSON.stringify(answer));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const errors: string[] = [];
    const list = new RevocationList({ endpoint: `http://127.0.0.1:${port}/revocations`, issuer: 'https://as.test', clientId: 'gw', clientSecret: 's', pollMs: 60_000, onError: (e) => errors.push(e.message) });
    try {
      assert.deepEqual(list.check({ jti: 'anything' }), { refuse: 'unavailable', reason: 'the revocation list has not been loaded yet' }, 'fails closed before the first load');
      await list.refresh();
      assert.equal(requests[0]!.auth, `Basic ${Buffer.from('gw:s').toString('base64')}`);
      assert.equal(requests[0]!.url, '/revocations', 'the first read is a full one');
      assert.deepEqual(list.check({ jti: 'revoked-1' }), { refuse: 'revoked', reason: 'the token was revoked' });
      assert.equal(list.reason({ jti: 'fine', grant_id: 'grant-1' }), 'the grant of the token was revoked');
      assert.equal(list.reason({ jti: 'fine', client_id: 'disabled-agent' }), 'client disabled-agent is disabled');
      assert.equal(list.reason({ client_id: 'gateway', act: { sub: 'mcp-server', act: { sub: 'disabled-agent' } } }), 'client disabled-agent is disabled', 'anywhere in the chain');
      assert.equal(list.reason({ client_id: 'old-agent' }), 'client old-agent has expired');
      assert.match(list.reason({ client_id: 'reset-agent', iat: now - 200 })!, /cut off/);
      assert.equal(list.reason({ client_id: 'reset-agent', iat: now }), undefined, 'tokens issued after the reset are fine');
      assert.equal(list.check({ jti: 'fine', client_id: 'someone', act: { sub: 'ok-agent' } }), undefined);

      await list.refresh();
      assert.equal(requests[1]!.url, `/revocations?since=${now - 10}`, 'then incremental');
      assert.equal(requests[1]!.ifNoneMatch, '"v1"');
      assert.equal(list.reason({ jti: 'revoked-1' }), 'the token was revoked', 'a 304 keeps the list');

      list.apply({ iss: 'https://as.test', type: 'token', jti: 'pushed', exp: now + 60, revoked_at: now });
      list.apply({ iss: 'https://other-as.test', type: 'grant', grant_id: 'grant-2', revoked_at: now, until: now + 60 });
      list.apply({ iss: 'https://as.test', type: 'client', client: { client_id: 'ok-agent', disabled_at: now, tokens_valid_after: now, expired_at: null } });
      assert.equal(list.reason({ jti: 'pushed' }), 'the token was revoked', 'a pushed revocation applies at once');
      assert.equal(list.reason({ grant_id: 'grant-2' }), undefined, "another issuer's events are ignored");
      assert.equal(list.reason({ client_id: 'someone', act: { sub: 'ok-agent' } }), 'client ok-agent is disabled');

      answer = undefined;
      await list.refresh();
      assert.equal(errors.length, 1);
      assert.equal(list.reason({ jti: 'revoked-1' }), 'the token was revoked', 'the last list stays in force');
      assert.equal(list.reason({ jti: 'pushed' }), 'the token was revoked');
    } finally {
      list.stop();
      server.close();
    }
  });

  it('a client pushed as disabled while a poll is in flight stays disabled when that poll lands with an older list', async () => {
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The poll's answer was read before the disable committed: its client list is empty.
    const fetchHeld = (async () => {
      await held;
      return new Response(JSON.stringify({ next_since: 0, tokens: [], grants: [], clients: [] }), { status: 200, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    const list = new RevocationList({ endpoint: 'http://127.0.0.1:9/revocations', issuer: 'https://as.test', clientId: 'gw', clientSecret: 's', pollMs: 60_000, fetch: fetchHeld });
    const polling = list.refresh();
    const now = Math.floor(Date.now() / 1000);
    list.apply({ iss: 'https://as.test', type: 'client', client: { client_id: 'agent-x', disabled_at: now, tokens_valid_after: now, expired_at: null } });
    assert.equal(list.reason({ client_id: 'agent-x' }), 'client agent-x is disabled', 'in force at once');
    release!();
    await polling;
    assert.equal(list.reason({ client_id: 'agent-x' }), 'client agent-x is disabled', 'the older poll answer did not undo the push');
  });
});
