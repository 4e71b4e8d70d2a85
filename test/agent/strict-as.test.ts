import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MandateAgent, type AgentOptions } from '../../src/agent/agent.ts';
import { AgentError } from '../../src/agent/errors.ts';
import { CredentialStore } from '../../src/agent/store.ts';
import { startStrictAs, type StrictAs, type StrictAsOptions } from '../helpers/strict-as.ts';

/**
 * The agent against a strict (sometimes faulty) AS + MCP server (test/helpers/strict-as.ts): the
 * spec-repository-only conformance scenarios (dpop, dpop-nonce, iss-*) as black-box tests, and the
 * fixes the published suite drove (resource at redemption, the registered auth method).
 */
async function withStrictAs(options: StrictAsOptions, body: (as: StrictAs, agent: (extra?: Partial<AgentOptions>) => MandateAgent, file: string) => Promise<void>): Promise<void> {
  const as = await startStrictAs(options);
  const file = join(mkdtempSync(join(tmpdir(), 'mandate-strict-as-')), 'credentials.json');
  const agent = (extra: Partial<AgentOptions> = {}) =>
    new MandateAgent({
      mcpUrl: as.mcpUrl,
      store: new CredentialStore(file),
      callbackPort: 0,
      mode: 'direct',
      onAuthorizationUrl: async (url) => {
        await fetch(url).catch(() => undefined);
      },
      ...extra,
    });
  try {
    await body(as, agent, file);
  } finally {
    await as.close();
  }
}

const tokenRequests = (as: StrictAs) => as.requests.filter((r) => r.path === '/token');

async function useTools(agent: MandateAgent): Promise<void> {
  const client = await agent.connect();
  try {
    await client.listTools();
    await client.callTool({ name: 'test-tool', arguments: {} });
  } finally {
    await client.close();
  }
}

describe('agent against a strict AS: RFC 9207 iss', () => {
  it('advertised and correct: the code is redeemed', () =>
    withStrictAs({ issAdvertised: true, iss: 'correct' }, async (as, agent) => {
      await agent().login();
      assert.equal(tokenRequests(as).length, 1);
    }));

  it('not advertised and absent: the code is redeemed', () =>
    withStrictAs({ issAdvertised: false, iss: 'missing' }, async (as, agent) => {
      await agent().login();
      assert.equal(tokenRequests(as).length, 1);
    }));

  it('advertised but missing: a protocol error, and no token request', () =>
    withStrictAs({ issAdvertised: true, iss: 'missing' }, async (as, agent) => {
      await assert.rejects(agent().login(), (error: AgentError) => error.kind === 'protocol' && /carries no iss/.test(error.message));
      assert.equal(tokenRequests(as).length, 0);
    }));

  for (const issAdvertised of [true, false]) {
    it(`another issuer's iss (${issAdvertised ? '' : 'not '}advertised): a protocol error, and no token request`, () =>
      withStrictAs({ issAdvertised, iss: 'wrong' }, async (as, agent) => {
        await assert.rejects(agent().login(), (error: AgentError) => error.kind === 'protocol' && /comes from http:\/\/127\.0\.0\.1:1\/evil/.test(error.message));
        assert.equal(tokenRequests(as).length, 0);
      }));
  }
});

describe('agent against a faulty AS: issuer mismatch (RFC 8414 §3.3)', () => {
  it('AS metadata naming another issuer: a protocol error, no authorization request, no registration', () =>
    withStrictAs({ metadataIssuer: 'http://127.0.0.1:1/other' }, async (as, agent) => {
      await assert.rejects(agent().login(), (error: AgentError) => error.kind === 'protocol' && /names issuer http:\/\/127\.0\.0\.1:1\/other: refused/.test(error.message));
      assert.deepEqual(as.requests.filter((r) => ['/authorize', '/register', '/token'].includes(r.path)), []);
    }));
});

describe('agent against a strict AS: what the conformance suite drove', () => {
  it('the code is redeemed with the resource of the authorization request (RFC 8707 §2.2)', () =>
    withStrictAs({}, async (as, agent) => {
      await agent().login();
      const authorize = as.requests.find((r) => r.path === '/authorize')!;
      assert.equal(authorize.query.resource, as.mcpUrl);
      assert.equal(tokenRequests(as)[0]!.form.resource, as.mcpUrl);
      assert.deepEqual(as.problems, []);
    }));

  it('a registration answered with client_secret_post authenticates in the body, not with Basic', () =>
    withStrictAs({ registration: { token_endpoint_auth_method: 'client_secret_post', client_secret: 's3cret' } }, async (as, agent) => {
      await agent().login();
      const [redemption] = tokenRequests(as);
      assert.equal(redemption!.headers.authorization, undefined);
      assert.equal(redemption!.form.client_secret, 's3cret');
      assert.match(redemption!.form.client_id!, /^client-/);
    }));

  it('offline_access is asked for only when the AS lists it', async () => {
    await withStrictAs({ scopesSupported: ['mcp', 'offline_access'] }, async (as, agent) => {
      await agent().login(['mcp']);
      assert.equal(as.requests.find((r) => r.path === '/authorize')!.query.scope, 'offline_access mcp');
    });
    await withStrictAs({ scopesSupported: ['mcp'] }, async (as, agent) => {
      await agent().login(['mcp']);
      assert.equal(as.requests.find((r) => r.path === '/authorize')!.query.scope, 'mcp');
    });
  });

  it('client mode: client_credentials for the MCP resource, authenticated by private_key_jwt (iss = sub = client id, aud = the issuer)', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { jwtVerify, createLocalJWKSet, exportJWK } = await import('jose');
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await withStrictAs({}, async (as, agent) => {
      await useTools(agent({ mode: 'client', clientId: 'robot', clientKey: { privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), alg: 'ES256' } }));
      const [request] = tokenRequests(as);
      assert.equal(tokenRequests(as).length, 1, 'one token, reused');
      assert.equal(request!.form.grant_type, 'client_credentials');
      assert.equal(request!.form.resource, as.mcpUrl);
      assert.equal(request!.form.client_assertion_type, 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(pair.publicKey)), alg: 'ES256' }] });
      const { payload } = await jwtVerify(request!.form.client_assertion!, jwks, { issuer: 'robot', subject: 'robot', audience: as.issuer });
      assert.ok(payload.jti && payload.exp! - payload.iat! <= 60);
    });
  });
});

describe('agent against a strict AS: workload identity (SEP-1933, the spec repository\'s wif-jwt-bearer)', () => {
  // Not verified by the agent (the AS does): only its aud is read — the token goes to that AS only.
  const platformJwt = (aud: unknown) => `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify({ iss: 'https://platform', aud })).toString('base64url')}.c2ln`;

  it('a valid platform JWT: one jwt-bearer request (assertion, resource, no client authentication), then MCP access', () =>
    withStrictAs({}, async (as, agent) => {
      const workloadJwt = platformJwt(as.issuer);
      const tokenFile = join(mkdtempSync(join(tmpdir(), 'mandate-wif-')), 'token');
      writeFileSync(tokenFile, `${workloadJwt}\n`);
      await useTools(agent({ mode: 'workload', workloadIdentity: { tokenFile } }));
      const requests = tokenRequests(as);
      assert.equal(requests.length, 1);
      assert.deepEqual(requests[0]!.form, { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: workloadJwt, resource: as.mcpUrl });
      assert.equal(requests[0]!.headers.authorization, undefined);
      assert.ok(as.requests.some((r) => r.path === '/mcp' && r.headers.authorization?.startsWith('Bearer ')));
    }));

  for (const error of ['invalid_grant', 'invalid_scope', 'unauthorized_client'] as const) {
    it(`refused with ${error}: an AgentError naming it, exactly one token request, no other grant`, () =>
      withStrictAs({ wifError: error }, async (as, agent) => {
        const workloadJwt = platformJwt([as.issuer, 'https://elsewhere.example']);
        await assert.rejects(useTools(agent({ mode: 'workload', workloadIdentity: { token: async () => workloadJwt } })), (e: AgentError) => e instanceof AgentError && e.oauthError === error && e.message.includes(`(${error}: refused: ${error}); not retried`));
        assert.deepEqual(tokenRequests(as).map((r) => r.form.grant_type), ['urn:ietf:params:oauth:grant-type:jwt-bearer']);
      }));
  }

  it('with a client id: client credentials authenticated by the platform JWT (workload_identity)', () =>
    withStrictAs({}, async (as, agent) => {
      const workloadJwt = platformJwt(`${as.issuer}/token`);
      await useTools(agent({ mode: 'workload', clientId: 'payments-worker', workloadIdentity: { token: async () => workloadJwt } }));
      const [request] = tokenRequests(as);
      assert.equal(request!.form.grant_type, 'client_credentials');
      assert.equal(request!.form.client_id, 'payments-worker');
      assert.equal(request!.form.client_assertion, workloadJwt);
      assert.equal(request!.form.client_assertion_type, 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    }));

  it('a platform JWT for another authorization server than the one the MCP server names is never sent (a rogue MCP server cannot collect it)', () =>
    withStrictAs({}, async (as, agent) => {
      for (const [workloadJwt, clientId] of [[platformJwt('https://real-as.example'), undefined], [platformJwt(undefined), undefined], [platformJwt(['https://real-as.example']), 'payments-worker']] as const) {
        await assert.rejects(
          useTools(agent({ mode: 'workload', ...(clientId ? { clientId } : {}), workloadIdentity: { token: async () => workloadJwt } })),
          (e: AgentError) => e instanceof AgentError && e.kind === 'protocol' && e.message.includes(`not for ${as.issuer}, the authorization server the MCP server names: not sent`),
        );
      }
      assert.equal(tokenRequests(as).length, 0, 'no token request carried it');
    }));
});

describe('agent against a strict AS: enterprise mode (ID-JAG)', () => {
  const enterprise = (as: StrictAs) => ({ idpTokenEndpoint: `${as.origin}/idp/token`, idpClientId: 'idp-client', idpClientSecret: 'idp-secret', idToken: 'the-id-token' });

  it('the ID token is exchanged at the IdP for an ID-JAG (audience = the MCP AS issuer, resource = the MCP resource), then presented with jwt-bearer', () =>
    withStrictAs({}, async (as, agent) => {
      await useTools(agent({ mode: 'enterprise', clientId: 'mcp-client', clientSecret: 'mcp-secret', enterprise: enterprise(as) }));
      const idp = as.requests.filter((r) => r.path === '/idp/token');
      assert.equal(idp.length, 1);
      assert.deepEqual(
        { ...idp[0]!.form },
        {
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          requested_token_type: 'urn:ietf:params:oauth:token-type:id-jag',
          audience: as.issuer,
          resource: as.mcpUrl,
          subject_token: 'the-id-token',
          subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
        },
      );
      assert.equal(idp[0]!.headers.authorization, `Basic ${Buffer.from('idp-client:idp-secret').toString('base64')}`);
      const [grant] = tokenRequests(as);
      assert.deepEqual({ ...grant!.form }, { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: 'id-jag-from-idp' });
      assert.equal(grant!.headers.authorization, `Basic ${Buffer.from('mcp-client:mcp-secret').toString('base64')}`);
      assert.equal(as.requests.filter((r) => r.path === '/authorize').length, 0, 'no browser at the MCP AS');
    }));

  it('an IdP that issues something other than an ID-JAG: a protocol error, nothing presented to the MCP AS', () =>
    withStrictAs({ idpIssuedTokenType: 'urn:ietf:params:oauth:token-type:access_token' }, async (as, agent) => {
      await assert.rejects(
        useTools(agent({ mode: 'enterprise', clientId: 'mcp-client', clientSecret: 'mcp-secret', enterprise: enterprise(as) })),
        (error: AgentError) => error.kind === 'protocol' && /not an ID-JAG/.test(error.message),
      );
      assert.equal(tokenRequests(as).length, 0);
    }));
});

describe('agent against a strict AS: DPoP (RFC 9449)', () => {
  it('dpop: a proof at the token endpoint, dpop_jkt at authorize, the DPoP scheme and a valid proof (ath, cnf.jkt, htu, htm) on every MCP request, a new jti each', () =>
    withStrictAs({ dpop: true }, async (as, agent, file) => {
      const a = agent();
      await a.login();
      await useTools(a);
      assert.deepEqual(as.problems, []);
      const authorize = as.requests.find((r) => r.path === '/authorize')!;
      assert.match(authorize.query.dpop_jkt!, /^[A-Za-z0-9_-]{43}$/);
      const mcp = as.requests.filter((r) => r.path === '/mcp' && r.headers.authorization);
      assert.ok(mcp.length >= 3, `MCP requests: ${mcp.length}`);
      assert.ok(mcp.every((r) => r.headers.authorization!.startsWith('DPoP ') && typeof r.headers.dpop === 'string'));
      assert.equal(new Set(as.proofs.map((p) => p.jti)).size, as.proofs.length);
      // The key is kept per registration, in the 0600 credentials file, private.
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const stored = JSON.parse(readFileSync(file, 'utf8')) as { issuers: Record<string, { dpop_keys?: Record<string, { d?: string; crv?: string }> }> };
      const keys = Object.values(stored.issuers[as.issuer]!.dpop_keys ?? {});
      assert.equal(keys.length, 1);
      assert.equal(keys[0]!.crv, 'P-256');
      assert.ok(keys[0]!.d);
    }));

  it('dpop: a later run proves with the kept key (the code-bound token keeps working)', () =>
    withStrictAs({ dpop: true }, async (as, agent) => {
      await agent().login();
      await useTools(agent());
      assert.deepEqual(as.problems, []);
    }));

  it('dpop-nonce: the AS and the MCP server each ask for a nonce; exactly one retry each, with the nonce and a new jti', () =>
    withStrictAs({ dpop: true, asNonce: true, rsNonce: true }, async (as, agent) => {
      const a = agent();
      await a.login();
      await useTools(a);
      assert.deepEqual(as.problems, []);
      const atToken = as.proofs.filter((p) => p.path === '/token');
      assert.equal(atToken.length, 2, 'the first proof, then the retry');
      assert.equal(atToken[0]!.nonce, undefined);
      assert.equal(atToken[1]!.nonce, 'as-nonce-1');
      // Nonces are kept per origin (this test server is one origin): the first MCP proof carries the
      // AS's nonce, which the MCP server does not take; then one retry, and its nonce from there on.
      const atMcp = as.proofs.filter((p) => p.path === '/mcp');
      assert.notEqual(atMcp[0]!.nonce, 'rs-nonce-1');
      assert.ok(atMcp.length >= 3 && atMcp.slice(1).every((p) => p.nonce === 'rs-nonce-1'), 'every later proof carries the nonce');
      assert.equal(atMcp.filter((p) => p.nonce !== 'rs-nonce-1').length, 1, 'one refused proof, so one retry only');
    }));

  it("dpop 'never': no proof, a Bearer token", () =>
    withStrictAs({}, async (as, agent) => {
      await agent({ dpop: 'never' }).login();
      assert.equal(tokenRequests(as)[0]!.headers.dpop, undefined);
    }));

  it("dpop 'always' and an AS that issues Bearer tokens: refused", () =>
    withStrictAs({ ignoreDpop: true }, async (as, agent) => {
      const login = agent({ dpop: 'always' }).login();
      await assert.rejects(login, (error: AgentError) => error.kind === 'protocol' && /not a DPoP-bound one/.test(error.message));
      assert.equal(typeof tokenRequests(as)[0]!.headers.dpop, 'string', 'the proof was sent');
    }));
});
