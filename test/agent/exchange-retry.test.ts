import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { UnsecuredJWT } from 'jose';
import { MandateAgent } from '../../src/agent/agent.ts';
import { AgentError } from '../../src/agent/errors.ts';
import { CredentialStore } from '../../src/agent/store.ts';

/**
 * When the token exchange is refused, the agent refreshes the sign-in and tries once more only if
 * the refusal is about the subject (or actor) token itself. A refusal by policy (a may_act
 * mismatch, a chain too long, a disabled actor) would be refused again: no refresh is spent on it.
 * One stub server plays the MCP server (its challenge and metadata) and the authorization server.
 */
describe('agent: the exchange is retried after a refresh only when the token itself was refused', () => {
  let server: Server;
  let origin: string;
  let exchangeError = { error: 'invalid_request', error_description: '' };
  const seen: string[] = [];
  before(async () => {
    server = createServer((req, res) => {
      const json = (status: number, body: unknown, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
      const url = new URL(req.url!, origin);
      if (url.pathname === '/mcp') return json(401, {}, { 'www-authenticate': `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"` });
      if (url.pathname === '/.well-known/oauth-protected-resource/mcp') return json(200, { resource: `${origin}/mcp`, authorization_servers: [origin] });
      if (url.pathname === '/.well-known/oauth-authorization-server') return json(200, { issuer: origin, token_endpoint: `${origin}/token`, authorization_endpoint: `${origin}/authorize` });
      if (url.pathname !== '/token') return json(404, {});
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const grant = new URLSearchParams(body).get('grant_type')!;
        seen.push(grant.replace('urn:ietf:params:oauth:grant-type:', ''));
        if (grant === 'client_credentials' || grant === 'refresh_token') return json(200, { access_token: token(), token_type: 'Bearer', expires_in: 300, refresh_token: 'r2' });
        return json(400, exchangeError);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    seen.length = 0;
  });

  const token = () => new UnsecuredJWT({ sub: 'user-1', scope: 'banking:read' }).setExpirationTime('5m').encode();
  const agent = async () => {
    const store = new CredentialStore(join(mkdtempSync(join(tmpdir(), 'mandate-retry-')), 'credentials.json'));
    const expiresAt = Math.floor(Date.now() / 1000) + 300;
    await store.update(origin, () => ({ subject: { [`${origin}/mcp`]: { access_token: token(), refresh_token: 'r1', expires_at: expiresAt, scope: 'banking:read', client_id: 'agent', mode: 'delegated' } } }));
    return new MandateAgent({ mcpUrl: `${origin}/mcp`, store, clientId: 'agent', clientSecret: 'secret' });
  };

  it('a policy refusal (the chain is too long): no refresh, the refusal as the AS said it', async () => {
    exchangeError = { error: 'invalid_request', error_description: 'the delegation chain would be too long for this resource' };
    await assert.rejects((await agent()).mcpToken(), (error: unknown) => error instanceof AgentError && error.oauthDescription === exchangeError.error_description && error.kind !== 'not_signed_in');
    assert.deepEqual(seen, ['client_credentials', 'token-exchange']);
  });

  it('a may_act mismatch: no refresh either', async () => {
    exchangeError = { error: 'invalid_request', error_description: 'the subject token does not allow this client to act for its subject' };
    await assert.rejects((await agent()).mcpToken(), AgentError);
    assert.deepEqual(seen, ['client_credentials', 'token-exchange']);
  });

  it('a revoked subject token: refreshed (with a fresh actor token), and exchanged once more; a second refusal is not retried again', async () => {
    exchangeError = { error: 'invalid_request', error_description: 'the subject token is invalid, expired or revoked' };
    await assert.rejects((await agent()).mcpToken(), AgentError);
    assert.deepEqual(seen, ['client_credentials', 'token-exchange', 'refresh_token', 'client_credentials', 'token-exchange']);
  });
});
