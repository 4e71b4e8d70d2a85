import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MandateAgent, type AgentOptions } from '../../src/agent/agent.ts';
import { AgentDpop } from '../../src/agent/dpop.ts';
import { AgentError } from '../../src/agent/errors.ts';
import { CredentialStore } from '../../src/agent/store.ts';
import type { AuditEvent } from '../../src/store/types.ts';
import { decodeJwt, freePort, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { startFakeIdp, type FakeIdp } from '../helpers/id-jag.ts';

/**
 * Issue 17's acceptance for enterprise-managed authorization (MCP EMA, ID-JAG): two Mandate
 * authorization servers — the enterprise IdP and the MCP server's AS — and the agent SDK in
 * `mode: 'enterprise'` doing the whole chain. The person signs in once, at the IdP (the SDK's
 * `signInAtIdp`, the form-driving browser completing the page); every tool call after that runs
 * ID token → ID-JAG at the IdP → jwt-bearer at the MCP AS → a DPoP-bound token at the Mandate
 * gateway (`dpop.mode: require`, with nonces) in front of the banking MCP server (no auth of its own) — no browser at
 * the MCP AS. Refusals: an MCP AS the IdP's policy does not name (the IdP says `invalid_target`),
 * and an MCP AS that does not trust the IdP (it says `invalid_grant`).
 */
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const SECRETS = { idp: 'enterprise-sdk-agent-at-idp-secret-0123456789', mcp: 'enterprise-sdk-agent-at-mcp-secret-0123456789' };
const SCOPES = [{ name: 'mcp:read' }, { name: 'mcp:write' }];
const INTERACTIVE = /^(authorize|interaction|login|consent|agreement|par|device|totp)\./;

describe('enterprise mode of the agent SDK: IdP and MCP AS both Mandate, a gateway in front of the MCP server', () => {
  let idp: TestAuthServer;
  let mcpAs: TestAuthServer;
  /** Trusts the IdP, but the IdP's policy does not name it. */
  let stranger: TestAuthServer;
  /** Named by the IdP's policy, but trusts another IdP only. */
  let distrusting: TestAuthServer;
  let otherIdp: FakeIdp;
  let upstream: BankingServer;
  let gateway: TestGateway;
  let home: string;
  /** The issuers (startTestAuthServer's `issuer` is its own port's, not an overridden one). */
  let issuers: { mcp: string; stranger: string; distrusting: string };
  const mcpUrl = (path: string) => `${gateway.url}${path}`;

  before(async () => {
    process.env.ENTERPRISE_SDK_IDP_SECRET = SECRETS.idp;
    process.env.ENTERPRISE_SDK_MCP_SECRET = SECRETS.mcp;
    home = mkdtempSync(join(tmpdir(), 'mandate-enterprise-agent-'));
    // Every issuer is known before anything starts: the gateway names the MCP ASes, the IdP names them as audiences.
    const [mcpPort, strangerPort, distrustingPort] = [await freePort(), await freePort(), await freePort()];
    issuers = { mcp: `http://127.0.0.1:${mcpPort}`, stranger: `http://127.0.0.1:${strangerPort}`, distrusting: `http://127.0.0.1:${distrustingPort}` };
    upstream = await startBankingServer({ host: '127.0.0.1', port: 0 });
    gateway = await startTestGateway((url) =>
      (
        [
          ['/mcp', issuers.mcp],
          ['/stranger', issuers.stranger],
          ['/distrusting', issuers.distrusting],
        ] as const
      ).map(([path, issuer]) => ({
        path,
        upstream: upstream.url,
        rewrite: '/',
        resource: `${url}${path}`,
        authorization_servers: [issuer],
        scopes: ['mcp:read'],
        tools: { read_balance: {}, transfer: {} },
        // The upstream is told who calls (it has no auth of its own).
        identity_headers: true,
        dpop: { mode: 'require' as const, require_nonce: true },
      })),
    );
    otherIdp = await startFakeIdp();
    idp = await startTestAuthServer({
      dpop: { enabled: true },
      clients: [
        {
          client_id: 'agent-at-idp',
          client_secret_env: 'ENTERPRISE_SDK_IDP_SECRET',
          redirect_uris: ['http://localhost:3000/callback'],
          first_party: true,
          grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
        },
      ],
      id_jag: {
        audiences: [
          { audience: issuers.mcp, resources: [mcpUrl('/mcp')], clients: ['agent-at-idp'], client_id: { 'agent-at-idp': 'agent-at-mcp' }, scopes: ['mcp:read', 'mcp:write'], include_email: true },
          { audience: issuers.distrusting, resources: [mcpUrl('/distrusting')], clients: ['agent-at-idp'], client_id: { 'agent-at-idp': 'agent-at-mcp' }, scopes: ['mcp:read'], include_email: true },
        ],
      },
    });
    const mcpAsConfig = (issuer: string, port: number, path: string, trusted: string) => ({
      issuer,
      listen: { host: '127.0.0.1', port },
      dpop: { enabled: true },
      resources: [{ id: mcpUrl(path), name: 'MCP server behind the gateway', scopes: SCOPES }],
      clients: [{ client_id: 'agent-at-mcp', client_secret_env: 'ENTERPRISE_SDK_MCP_SECRET', grant_types: [JWT_BEARER] as never }],
      trusted_idps: [{ issuer: trusted, allow_loopback: true, link: { claims: ['sub' as const, 'email' as const], email_domains: ['example.com'], local_users: true } }],
    });
    mcpAs = await startTestAuthServer(mcpAsConfig(issuers.mcp, mcpPort, '/mcp', idp.issuer));
    stranger = await startTestAuthServer(mcpAsConfig(issuers.stranger, strangerPort, '/stranger', idp.issuer));
    distrusting = await startTestAuthServer(mcpAsConfig(issuers.distrusting, distrustingPort, '/distrusting', otherIdp.issuer));
  });
  after(async () => {
    await gateway?.close();
    await upstream?.close();
    for (const as of [distrusting, stranger, mcpAs, idp]) await as?.close();
    await otherIdp?.close();
    rmSync(home, { recursive: true, force: true });
  });

  const store = () => new CredentialStore(join(home, 'credentials.json'));
  const agent = (path: string, extra: Partial<AgentOptions> = {}) =>
    new MandateAgent({
      mcpUrl: mcpUrl(path),
      mode: 'enterprise',
      clientId: 'agent-at-mcp',
      clientSecret: SECRETS.mcp,
      enterprise: { idpIssuer: idp.issuer, idpClientId: 'agent-at-idp', idpClientSecret: SECRETS.idp },
      store: store(),
      callbackPort: 0,
      // The person at the IdP's pages (demo / demo); the browser then lands on the agent's loopback redirect.
      onAuthorizationUrl: async (url) => {
        assert.ok(url.startsWith(`${idp.issuer}/`), `the only sign-in is at the IdP, not at ${url}`);
        await fetch(await new FormBrowser(idp.issuer).authorize(url));
      },
      ...extra,
    });
  const events = async (as: TestAuthServer, since: number): Promise<AuditEvent[]> => {
    await as.ctx.audit.flush();
    return as.store.audit.query({ since, limit: 500 });
  };
  const idJagsIssued = async (since: number) => (await events(idp, since)).filter((e) => e.type === 'token.issued' && e.data?.issued_token_type === ID_JAG);

  it('signs in once at the IdP; each call runs the chain with no browser at the MCP AS; the token is DPoP-bound to the kept key and names the linked user; a new exchange once it expires', async (t) => {
    const start = Math.floor(Date.now() / 1000) - 1;
    const signIn = await agent('/mcp').signInAtIdp();
    assert.equal(signIn.client_id, 'agent-at-idp');
    assert.ok(signIn.refresh_token, 'the IdP gave a refresh token (its client uses them)');
    assert.equal(decodeJwt(signIn.id_token).iss, idp.issuer);

    // A later run: the kept sign-in is all it needs.
    const first = agent('/mcp');
    const result = await first.callTool('read_balance');
    assert.equal(result.isError, undefined);
    assert.match(JSON.stringify(result.content), /1250\.00/);

    // The token at the MCP server: the MCP AS's own account of the person (linked by email), bound to the agent's kept key.
    const token = decodeJwt(await first.mcpToken());
    const linked = (await mcpAs.store.users.findByUsername('demo'))!;
    assert.equal(token.iss, issuers.mcp);
    assert.equal(token.aud, mcpUrl('/mcp'));
    assert.equal(token.sub, linked.sub);
    assert.equal(token.idp, idp.issuer);
    assert.equal(token.client_id, 'agent-at-mcp');
    const kept = (await store().get(issuers.mcp))?.dpop_keys?.['agent-at-mcp'];
    assert.ok(kept, 'the proof key is kept under the MCP AS, for the agent client there');
    const jkt = await (await AgentDpop.load(kept)).thumbprint();
    assert.deepEqual(token.cnf, { jkt });
    assert.deepEqual([...upstream.accounts.keys()], [linked.sub], 'the MCP server was told the linked user (and opened their account)');
    const audited = (await gateway.auditEvents()).find((e) => e.tool === 'read_balance' && e.sub === linked.sub);
    assert.equal(audited?.client_id, 'agent-at-mcp');

    // The IdP issued one ID-JAG, for the MCP AS, bound to the same key (ID-JAG §8.6.1.1); the person signed in there once.
    const issued = await idJagsIssued(start);
    assert.equal(issued.length, 1);
    assert.equal(issued[0]!.data?.audience, issuers.mcp);
    assert.equal(issued[0]!.data?.jkt, jkt);
    assert.equal((await events(idp, start)).filter((e) => e.type === 'login.succeeded').length, 1);
    // The MCP AS saw no authorization, sign-in or consent: only the jwt-bearer grant.
    const atMcp = await events(mcpAs, start);
    for (const e of atMcp) assert.doesNotMatch(e.type, INTERACTIVE, `no ${e.type} at the MCP AS`);
    const grants = atMcp.filter((e) => e.type === 'token.issued');
    assert.equal(grants.length, 1);
    assert.equal(grants[0]!.data?.grant_type, JWT_BEARER);
    assert.equal(grants[0]!.data?.jkt, jkt);

    // The access token expires (15 minutes): the MCP AS issued no refresh token (ID-JAG §4.4.3), so
    // the next call makes a NEW exchange at the IdP — a new ID-JAG, its own jti — with the ID token kept.
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 16 * 60_000 });
    const second = await first.callTool('transfer', { to: 'bob', amount: 50 });
    assert.equal(second.isError, undefined, JSON.stringify(second.content));
    assert.match(JSON.stringify(second.content), /1200\.00/);
    const reissued = await idJagsIssued(start);
    assert.equal(reissued.length, 2, 'a second ID-JAG');
    const spent = (await events(mcpAs, start)).filter((e) => e.type === 'token.issued').map((e) => e.data?.idjag_jti);
    assert.equal(spent.length, 2);
    assert.notEqual(spent[0], spent[1], 'each ID-JAG presented once');
    assert.notEqual(decodeJwt(await first.mcpToken()).jti, token.jti);

    // An hour on, the ID token itself has expired: the kept refresh token renews it at the IdP, still without a browser.
    t.mock.timers.setTime(Date.now() + 50 * 60_000);
    const third = await agent('/mcp').callTool('read_balance');
    assert.match(JSON.stringify(third.content), /1200\.00/);
    const atIdp = await events(idp, start);
    assert.equal(atIdp.filter((e) => e.type === 'token.issued' && e.data?.grant_type === 'refresh_token').length, 1);
    assert.equal(atIdp.filter((e) => e.type === 'login.succeeded').length, 1, 'no second sign-in');
    assert.equal((await idJagsIssued(start)).length, 3);
  });

  it('the IdP policy does not name the MCP AS: the exact OAuth error (invalid_target), audited at the IdP; nothing presented to that AS', async () => {
    const start = Math.floor(Date.now() / 1000) - 1;
    await assert.rejects(agent('/stranger').callTool('read_balance'), (error: AgentError) => {
      assert.ok(error instanceof AgentError);
      assert.equal(error.kind, 'refused');
      assert.equal(error.status, 400);
      assert.equal(error.oauthError, 'invalid_target');
      assert.equal(error.oauthDescription, 'the audience is not a known authorization server');
      assert.match(error.message, new RegExp(`the identity provider ${idp.issuer} refused the ID-JAG \\(invalid_target`));
      return true;
    });
    const refused = (await events(idp, start)).find((e) => e.type === 'token.exchange_refused');
    assert.equal(refused?.error, 'invalid_target');
    assert.equal(refused?.reason, `audience=${issuers.stranger}`);
    assert.equal((await events(stranger, start)).filter((e) => e.type.startsWith('token.')).length, 0);
  });

  it('the MCP AS does not trust the IdP: the exact OAuth error (invalid_grant), audited at the MCP AS', async () => {
    const start = Math.floor(Date.now() / 1000) - 1;
    await assert.rejects(agent('/distrusting').callTool('read_balance'), (error: AgentError) => {
      assert.ok(error instanceof AgentError);
      assert.equal(error.kind, 'refused');
      assert.equal(error.status, 400);
      assert.equal(error.oauthError, 'invalid_grant');
      assert.equal(error.oauthDescription, 'the assertion issuer is not trusted');
      assert.match(error.message, new RegExp(`the authorization server ${issuers.distrusting} refused the ID-JAG \\(invalid_grant`));
      return true;
    });
    assert.equal((await idJagsIssued(start)).filter((e) => e.data?.audience === issuers.distrusting).length, 1, 'the IdP issued it');
    const refused = (await events(distrusting, start)).find((e) => e.type === 'token.jwt_bearer_refused');
    assert.equal(refused?.error, 'invalid_grant');
    assert.equal(refused?.reason, `issuer ${JSON.stringify(idp.issuer)} is not a trusted IdP`);
  });

  it('no sign-in kept at the IdP: not_signed_in, naming the command that signs in', async () => {
    const elsewhere = new MandateAgent({
      mcpUrl: mcpUrl('/mcp'),
      mode: 'enterprise',
      clientId: 'agent-at-mcp',
      clientSecret: SECRETS.mcp,
      enterprise: { idpIssuer: idp.issuer, idpClientId: 'agent-at-idp', idpClientSecret: SECRETS.idp },
      store: new CredentialStore(join(home, 'empty', 'credentials.json')),
    });
    await assert.rejects(elsewhere.callTool('read_balance'), (error: AgentError) => error.kind === 'not_signed_in' && error.message.includes(`mandate agent login --idp ${idp.issuer} --idp-client-id agent-at-idp`));
  });
});
