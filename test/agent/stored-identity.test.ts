import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UnsecuredJWT } from 'jose';
import { MandateAgent } from '../../src/agent/agent.ts';
import { AgentError } from '../../src/agent/errors.ts';
import { CredentialStore } from '../../src/agent/store.ts';

/**
 * `mandate agent whoami` answers from the credential file while the sign-in is fresh: no discovery,
 * so no round trips to the MCP server and the AS. The MCP URL here is a port that counts every
 * connection, so a test that reached the network would see it.
 */
describe('agent: the stored identity (whoami) needs no network while the sign-in is fresh', () => {
  let connections = 0;
  let mcpUrl: string;
  const server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    mcpUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/mcp`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const issuer = 'http://127.0.0.1:1';
  const token = (exp: number) => new UnsecuredJWT({ sub: 'user-1', scope: 'banking:read', may_act: { sub: 'sample-agent' } }).setExpirationTime(exp).encode();
  const agentWith = async (expiresAt: number, options: { clientId?: string; registered?: boolean } = {}) => {
    const store = new CredentialStore(join(mkdtempSync(join(tmpdir(), 'mandate-whoami-')), 'credentials.json'));
    await store.update(issuer, () => ({
      registered: options.registered ? { client_id: 'agent_1', client_secret: 's', method: 'agent' } : undefined,
      subject: {
        [mcpUrl]: {
          access_token: token(expiresAt),
          expires_at: expiresAt,
          scope: 'openid profile banking:read',
          client_id: options.registered ? 'agent_1' : 'sample-agent',
          mode: 'delegated',
          user: { sub: 'user-1', preferred_username: 'demo', name: 'Demo User' },
        },
      },
    }));
    return new MandateAgent({ mcpUrl, store, clientId: options.clientId, clientSecret: options.clientId ? 'secret' : undefined });
  };
  const now = () => Math.floor(Date.now() / 1000);

  it('a fresh sign-in of a pre-registered agent: who, which client, which mode — and not one connection', async () => {
    const identity = await (await agentWith(now() + 600, { clientId: 'sample-agent' })).storedIdentity();
    assert.deepEqual(
      { clientId: identity.clientId, registration: identity.registration, mode: identity.mode, user: identity.subject.user?.preferred_username },
      { clientId: 'sample-agent', registration: 'pre-registered', mode: 'delegated', user: 'demo' },
    );
    assert.equal(connections, 0);
  });

  it('a fresh sign-in through the agent\'s own registration, read from the same file', async () => {
    const identity = await (await agentWith(now() + 600, { registered: true })).storedIdentity();
    assert.equal(identity.clientId, 'agent_1');
    assert.equal(identity.registration, 'agent registration');
    assert.equal(connections, 0);
  });

  it('a sign-in made through another client than the one named is refused, as the online path refuses it', async () => {
    await assert.rejects((await agentWith(now() + 600, { clientId: 'other-agent' })).storedIdentity(), (error: unknown) => error instanceof AgentError && error.kind === 'not_signed_in' && /signed in through sample-agent, not other-agent/.test(error.message));
    assert.equal(connections, 0);
  });

  it('no sign-in at all: "not signed in" at once, without asking the network', async () => {
    const store = new CredentialStore(join(mkdtempSync(join(tmpdir(), 'mandate-whoami-')), 'credentials.json'));
    await assert.rejects(new MandateAgent({ mcpUrl, store }).storedIdentity(), (error: unknown) => error instanceof AgentError && error.kind === 'not_signed_in');
    assert.equal(connections, 0);
  });

  it('an expired sign-in goes the usual way (discovery, then a refresh): the network is asked', async () => {
    await assert.rejects((await agentWith(now() - 10, { clientId: 'sample-agent' })).storedIdentity(), AgentError);
    assert.ok(connections > 0, 'the expired sign-in started discovery at the MCP URL');
  });
});
