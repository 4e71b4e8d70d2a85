import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { demoConfigs } from '../../src/cli/demo.ts';
import { startAuthServer } from '../../src/auth-server/server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, decodeJwt, pkcePair, postForm } from '../helpers/auth-server.ts';

/**
 * The demo's administrator, with the demo's own configuration (only its authorization server, on
 * ports moved away from the documented ones): a password generated on first start and kept, with
 * which the admin signs in for a token of the admin resource.
 */
describe('demo admin user', () => {
  it('gets a generated password on first start, kept on the next, and signs in for admin scopes', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'mandate-demo-admin-'));
    // Away from the documented ports and from other tests' offsets.
    const portOffset = 20_000 + Math.floor(Math.random() * 20_000);
    try {
      const { auth: config } = await demoConfigs({ portOffset, dataDir });
      const log = pino({ level: 'silent' });
      let as = await startAuthServer(config, { log });
      const file = join(dataDir, 'secrets', 'admin.password');
      const password = readFileSync(file, 'utf8').trim();
      assert.match(password, /^[A-Za-z0-9_-]{24}$/);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      await as.close();
      as = await startAuthServer(config, { log });
      try {
        assert.equal(readFileSync(file, 'utf8').trim(), password, 'the password is kept across starts');
        const issuer = as.ctx.issuer;
        const { verifier, challenge } = pkcePair();
        const redirectUri = 'http://localhost:3000/callback';
        const url = new URL(`${issuer}/authorize`);
        url.search = new URLSearchParams({ response_type: 'code', client_id: 'sample-agent', redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', scope: 'admin:read admin:write', resource: `${issuer}/admin` }).toString();
        const login = await new FormBrowser(issuer).open(url.href);
        assert.ok(login.html.includes('name="password"'));
        const back = await new FormBrowser(issuer).authorize(url.href, { username: 'admin', password });
        const secret = readFileSync(join(dataDir, 'secrets', 'sample-agent.secret'), 'utf8').trim();
        const token = await postForm(`${issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: redirectUri, code_verifier: verifier }, { authorization: basic('sample-agent', secret) });
        assert.equal(token.status, 200, token.text);
        assert.equal(token.json.scope, 'admin:read admin:write');
        assert.equal(decodeJwt(token.json.access_token as string).aud, `${issuer}/admin`);
        const agents = await fetch(`${issuer}/admin/api/v1/agents`, { headers: { authorization: `Bearer ${token.json.access_token}` } });
        assert.equal(agents.status, 200);
        assert.ok(((await agents.json()) as { items: { client_id: string }[] }).items.some((a) => a.client_id === 'sample-agent'));
      } finally {
        await as.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
