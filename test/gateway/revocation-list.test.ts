import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { RevocationList } from '../../src/gateway/revocation-list.ts';
import { freePort } from '../helpers/auth-server.ts';

describe('gateway revocation list', () => {
  it('refuses revoked jtis and tokens whose client or any actor is disabled, expired or cut off; keeps the last list when a poll fails', async () => {
    const now = Math.floor(Date.now() / 1000);
    let answer: unknown = {
      tokens: [{ jti: 'revoked-1' }],
      clients: [
        { client_id: 'disabled-agent', disabled_at: now - 10, tokens_valid_after: null, expired_at: null },
        { client_id: 'old-agent', disabled_at: null, tokens_valid_after: null, expired_at: now - 5 },
        { client_id: 'reset-agent', disabled_at: null, tokens_valid_after: now - 100, expired_at: null },
      ],
    };
    let auth = '';
    const server = createServer((req, res) => {
      auth = req.headers.authorization ?? '';
      if (answer === undefined) return void res.writeHead(500).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const errors: string[] = [];
    const list = new RevocationList({ endpoint: `http://127.0.0.1:${port}/revocations`, clientId: 'gw', clientSecret: 's', pollMs: 60_000, onError: (e) => errors.push(e.message) });
    try {
      await list.refresh();
      assert.equal(auth, `Basic ${Buffer.from('gw:s').toString('base64')}`);
      assert.equal(list.reason({ jti: 'revoked-1' }), 'the token was revoked');
      assert.equal(list.reason({ jti: 'fine', client_id: 'disabled-agent' }), 'client disabled-agent is disabled');
      assert.equal(list.reason({ client_id: 'gateway', act: { sub: 'mcp-server', act: { sub: 'disabled-agent' } } }), 'client disabled-agent is disabled', 'anywhere in the chain');
      assert.equal(list.reason({ client_id: 'old-agent' }), 'client old-agent has expired');
      assert.match(list.reason({ client_id: 'reset-agent', iat: now - 200 })!, /cut off/);
      assert.equal(list.reason({ client_id: 'reset-agent', iat: now }), undefined, 'tokens issued after the reset are fine');
      assert.equal(list.reason({ jti: 'fine', client_id: 'someone', act: { sub: 'ok-agent' } }), undefined);
      answer = undefined;
      await list.refresh();
      assert.equal(errors.length, 1);
      assert.equal(list.reason({ jti: 'revoked-1' }), 'the token was revoked', 'the last list stays in force');
    } finally {
      server.close();
    }
  });
});
