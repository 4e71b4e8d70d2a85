import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MandateAgent, type AgentOptions } from '../../src/agent/agent.ts';
import { AgentError } from '../../src/agent/errors.ts';
import { CredentialStore } from '../../src/agent/store.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { adminAccess } from '../helpers/admin.ts';
import { decodeJwt, startTestAuthServer } from '../helpers/auth-server.ts';
import { startBankingServer } from '../../examples/banking/server.ts';
import { startTestGateway } from '../helpers/gateway.ts';

const AGENT_RESOURCE = 'https://agent.example.test';
const BANKING = [{ name: 'banking:read' }, { name: 'banking:transfer' }];

/** An AS, and a gateway route in front of the banking MCP server. */
async function startStack(overrides: Parameters<typeof startTestAuthServer>[0]) {
  const as = await startTestAuthServer({
    resources: [{ id: AGENT_RESOURCE, name: 'The agent', scopes: BANKING, may_act: 'requesting_client' }] as never,
    ...overrides,
    // Agents that register themselves may read, never move money (the demo's allowlist).
    registration: { allowed_scopes: ['banking:read'], ...overrides?.registration },
  });
  const upstream = await startBankingServer({ host: '127.0.0.1', port: 0 });
  const gateway = await startTestGateway((url) => [
    {
      path: '/mcp',
      upstream: upstream.url,
      rewrite: '/',
      resource: `${url}/mcp`,
      authorization_servers: [as.issuer],
      tools: { read_balance: { scopes: ['banking:read'] }, list_transactions: { scopes: ['banking:read'], allow: 'false', reason: 'closed in this test' } },
      unlisted_tools: 'deny',
      identity_headers: true,
    },
  ]);
  const mcpUrl = `${gateway.url}/mcp`;
  const admin = await adminAccess(as);
  // The gateway's resource, known once its port is: any actor the person named in may_act, one hop.
  const created = await admin.api('POST', '/resources', { definition: { id: mcpUrl, name: 'Banking', scopes: BANKING, exchange: { max_depth: 1 } } });
  assert.equal(created.status, 201, created.text);
  return {
    as,
    gateway,
    mcpUrl,
    admin,
    async close() {
      await gateway.close();
      await upstream.close();
      await as.close();
    },
  };
}

type Stack = Awaited<ReturnType<typeof startStack>>;

/** An agent whose sign-in URL is completed by a form-driving browser (demo/demo, allow). */
function agentFor(stack: Stack, home: string, options: Partial<AgentOptions> = {}) {
  const registered: string[] = [];
  const urls: URL[] = [];
  const agent = new MandateAgent({
    mcpUrl: stack.mcpUrl,
    agentResource: AGENT_RESOURCE,
    callbackPort: 0,
    store: new CredentialStore(join(home, 'credentials.json')),
    onRegistered: (client) => void registered.push(client.client_id),
    onAuthorizationUrl: async (url) => {
      urls.push(new URL(url));
      const back = await new FormBrowser(stack.as.issuer).authorize(url);
      await fetch(back);
    },
    ...options,
  });
  return { agent, registered, urls };
}

async function readBalance(agent: MandateAgent) {
  const client = await agent.connect();
  try {
    return await client.callTool({ name: 'read_balance', arguments: {} });
  } finally {
    await client.close();
  }
}

describe('agent SDK: registration without a pre-registered client id (MCP spec order)', () => {
  let open: Stack;
  let agentsOnly: Stack;
  let documents: Server;
  let documentUrl: string;
  let home: string;
  const homes: string[] = [];

  before(async () => {
    open = await startStack({ client_id_metadata_documents: { allow_loopback: true } as never });
    // An AS that onboards agents only: no open registration, no metadata documents.
    agentsOnly = await startStack({ registration: { dynamic_clients: false }, client_id_metadata_documents: { enabled: false } as never });
    documents = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ client_id: documentUrl, client_name: 'Agent with a metadata document', redirect_uris: ['http://localhost:3000/callback'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] }));
    });
    await new Promise<void>((resolve) => documents.listen(0, '127.0.0.1', resolve));
    documentUrl = `http://127.0.0.1:${(documents.address() as AddressInfo).port}/agent.json`;
  });
  after(async () => {
    await open?.close();
    await agentsOnly?.close();
    documents?.close();
  });
  const freshHome = () => homes.push((home = mkdtempSync(join(tmpdir(), 'mandate-agent-reg-'))));
  after(() => {
    for (const dir of homes) rmSync(dir, { recursive: true, force: true });
  });

  it('the AS names both registration endpoints in its metadata, and only agents may register where open registration is off', async () => {
    const meta = (await (await fetch(`${open.as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(meta.registration_endpoint, `${open.as.issuer}/register`);
    assert.equal(meta.agent_registration_endpoint, `${open.as.issuer}/aiagent/register`);
    const closed = (await (await fetch(`${agentsOnly.as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(closed.registration_endpoint, undefined);
    assert.equal(closed.agent_registration_endpoint, `${agentsOnly.as.issuer}/aiagent/register`);
    const refused = await fetch(`${agentsOnly.as.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://localhost/cb'], token_endpoint_auth_method: 'none' }) });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: string }).error, 'access_denied');
  });

  it('no client id: dynamic registration as a public client, a direct sign-in for the MCP server, the registration kept for later runs', async () => {
    freshHome();
    const { agent, registered, urls } = agentFor(open, home);
    const tokens = await agent.login(['banking:read']);
    assert.equal(registered.length, 1);
    assert.match(registered[0]!, /^mc_/, 'an RFC 7591 registration');
    assert.equal(urls[0]!.searchParams.get('client_id'), registered[0]);
    assert.equal(urls[0]!.searchParams.get('resource'), open.mcpUrl, 'a public client signs in for the MCP server itself');
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.aud, open.mcpUrl);
    assert.equal(claims.client_id, registered[0]);
    assert.equal(claims.act, undefined);
    assert.deepEqual(await agent.identity(), { clientId: registered[0], registration: 'dynamic client registration (RFC 7591)', mode: 'direct' });
    const result = await readBalance(agent);
    assert.equal(result.isError, undefined, JSON.stringify(result));

    const file = JSON.parse(readFileSync(join(home, 'credentials.json'), 'utf8')) as { issuers: Record<string, { registered: Record<string, unknown> }> };
    assert.deepEqual(Object.keys(file.issuers[open.as.issuer]!.registered).sort(), ['client_id', 'method', 'token_endpoint_auth_method'], 'a public client: no secret to keep');
    assert.equal(file.issuers[open.as.issuer]!.registered.token_endpoint_auth_method, 'none', 'the method the AS registered it with, kept');

    // A refusal by policy (not a scope): the JSON-RPC message, as an error with its own exit code.
    const client = await agent.connect();
    try {
      await assert.rejects(client.callTool({ name: 'list_transactions', arguments: {} }), (error: AgentError) => {
        assert.equal(error.kind, 'refused');
        assert.equal(error.exitCode, 10);
        assert.equal(error.message, 'the MCP server refused the call: the call to tool list_transactions was refused by the gateway policy');
        return true;
      });
    } finally {
      await client.close();
    }

    const later = agentFor(open, home);
    await later.agent.login(['banking:read']);
    assert.deepEqual(later.registered, [], 'a later run reuses the registration');
    assert.equal(later.urls[0]!.searchParams.get('client_id'), registered[0]);
  });

  it('a client ID metadata document comes first when the agent has one and the AS accepts them', async () => {
    freshHome();
    const { agent, registered, urls } = agentFor(open, home, { clientMetadataUrl: documentUrl });
    const tokens = await agent.login(['banking:read']);
    assert.deepEqual(registered, [documentUrl]);
    assert.equal(urls[0]!.searchParams.get('client_id'), documentUrl);
    assert.equal(decodeJwt(tokens.access_token).client_id, documentUrl);
    assert.equal((await agent.identity()).registration, 'client ID metadata document');
    assert.equal((await readBalance(agent)).isError, undefined);
  });

  it('agent registration: a confidential agent, delegated — its tokens for the person carry act; the secret only in the 0600 file', async () => {
    freshHome();
    const { agent, registered, urls } = agentFor(open, home, { register: 'agent' });
    await agent.login(['banking:read']);
    assert.match(registered[0]!, /^agent_/);
    assert.equal(urls[0]!.searchParams.get('resource'), AGENT_RESOURCE, 'the person signs in to the agent');
    const tokens = await agent.tokens();
    assert.equal(tokens.mode, 'delegated');
    assert.deepEqual(tokens.subject.may_act, { sub: registered[0] });
    assert.deepEqual(tokens.mcp.act, { sub: registered[0], iss: tokens.mcp.iss, sub_profile: 'ai_agent', client_id: registered[0] });
    assert.equal(tokens.mcp.aud, open.mcpUrl);
    assert.equal(tokens.actor?.sub, registered[0], "the agent's own token");
    assert.equal((await readBalance(agent)).isError, undefined);
    const file = join(home, 'credentials.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const kept = (JSON.parse(readFileSync(file, 'utf8')) as { issuers: Record<string, { registered: Record<string, string> }> }).issuers[open.as.issuer]!.registered;
    assert.equal(kept.method, 'agent');
    assert.ok(kept.client_secret && kept.registration_access_token, 'the secret and the RFC 7592 token are kept');
  });

  it('a disabled registered agent: an error naming the registration and how to start over; forgetting it deletes it at the AS (RFC 7592)', async () => {
    const { agent } = agentFor(open, home, { register: 'agent' });
    const kept = (await agent.registration())!;
    const patch = (enabled: boolean) => open.admin.api('PATCH', `/agents/${kept.client_id}`, { enabled });
    assert.equal((await patch(false)).status, 200);
    await assert.rejects(agent.actorToken(), (error: AgentError) => {
      assert.equal(error.kind, 'agent_disabled');
      assert.match(error.message, new RegExp(`refused the agent's registration ${kept.client_id} \\(agent registration\\).*logout --forget-registration`));
      return true;
    });
    assert.equal((await patch(true)).status, 200);

    assert.equal((await agent.forgetRegistration())?.client_id, kept.client_id);
    assert.equal(await agent.registration(), undefined);
    await assert.rejects(agent.subjectToken(), (error: AgentError) => error.kind === 'not_signed_in', 'its sign-ins are forgotten with it');
    const read = await fetch(kept.registration_client_uri!, { headers: { authorization: `Bearer ${kept.registration_access_token}` } });
    assert.equal(read.status, 401, 'deleted at the AS');

    const again = agentFor(open, home, { register: 'agent' });
    await again.agent.login(['banking:read']);
    assert.equal(again.registered.length, 1);
    assert.notEqual(again.registered[0], kept.client_id, 'the next login registers anew');
  });

  it('auto, where the AS takes neither metadata documents nor open registration: agent registration', async () => {
    freshHome();
    const { agent, registered } = agentFor(agentsOnly, home, { clientMetadataUrl: documentUrl });
    await agent.login(['banking:read']);
    assert.match(registered[0]!, /^agent_/);
    const tokens = await agent.tokens();
    assert.deepEqual(tokens.mcp.act, { sub: registered[0], iss: tokens.mcp.iss, sub_profile: 'ai_agent', client_id: registered[0] });
    assert.equal((await readBalance(agent)).isError, undefined);
  });

  it('a sign-in made through another client is not used with this one: the error names that client', async () => {
    freshHome();
    const { agent } = agentFor(open, home);
    await agent.store.update(open.as.issuer, () => ({ subject: { [open.mcpUrl]: { access_token: 'x', expires_at: 4102444800, scope: 'banking:read', client_id: 'sample-agent', mode: 'delegated' } } }));
    await assert.rejects(agent.subjectToken(), (error: AgentError) => {
      assert.equal(error.kind, 'not_signed_in');
      assert.match(error.message, /was made through sample-agent, which is not the agent's registration: pass --client-id sample-agent/);
      return true;
    });
    const other = agentFor(open, home, { clientId: 'another-agent' });
    await assert.rejects(other.agent.mcpToken(), /signed in through sample-agent, not another-agent/);
  });

  it('a method the AS does not offer: a usage error that says what was missing', async () => {
    freshHome();
    const { agent } = agentFor(agentsOnly, home, { register: 'dynamic' });
    await assert.rejects(agent.login(['banking:read']), (error: AgentError) => {
      assert.equal(error.kind, 'usage');
      assert.equal(error.message, `${agentsOnly.as.issuer} offers the agent no dynamic client registration (RFC 7591) (no registration_endpoint in its metadata): pass --client-id (and AGENT_SECRET) for a client registered there`);
      return true;
    });
    const document = agentFor(agentsOnly, home, { register: 'metadata-document', clientMetadataUrl: documentUrl });
    await assert.rejects(document.agent.login(['banking:read']), /does not accept client ID metadata documents/);
  });
});
