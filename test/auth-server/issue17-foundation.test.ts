import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { startTestAuthServer, postForm, type TestAuthServer } from '../helpers/auth-server.ts';
import { ID_JAG_PROFILE, JWT_BEARER_GRANT, TOKEN_TYPES } from '../../src/core/delegation.ts';

/** Issue 17, WP0: the new keys change nothing until configured, and the jwt-bearer grant stays unsupported. */
describe('issue 17 foundation at the authorization server', () => {
  let plain: TestAuthServer;
  let configured: TestAuthServer;
  before(async () => {
    plain = await startTestAuthServer();
    configured = await startTestAuthServer({
      dpop: { enabled: true, signing_alg_values: ['ES256', 'EdDSA'] },
      trusted_idps: [{ issuer: 'https://idp.example.test', jwks_uri: 'https://idp.example.test/jwks' }],
      id_jag: { audiences: [{ audience: 'https://other-as.example.test', resources: ['https://mcp.other.example.test/mcp'], clients: ['agent-1'] }] },
      workload_identity: { issuers: [{ issuer: 'https://oidc.example.test/cluster-1' }] },
      agents: [
        {
          client_id: 'planner',
          grant_types: ['client_credentials'],
          workload_identity: { issuer: 'https://oidc.example.test/cluster-1', subject: 'system:serviceaccount:agents:planner', claims: { 'kubernetes.io.namespace': 'agents' } },
        },
      ],
    });
  });
  after(async () => {
    await plain?.close();
    await configured?.close();
  });

  const metadataOf = async (server: TestAuthServer) => (await (await fetch(`${server.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;

  it('metadata has none of the new fields by default, and no jwt-bearer grant', async () => {
    const metadata = await metadataOf(plain);
    for (const field of ['dpop_signing_alg_values_supported', 'authorization_grant_profiles_supported', 'identity_chaining_requested_token_types_supported']) {
      assert.equal(field in metadata, false, field);
    }
    assert.equal((metadata.grant_types_supported as string[]).includes(JWT_BEARER_GRANT), false);
    assert.deepEqual(metadata.token_endpoint_auth_methods_supported, ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']);
  });

  it('metadata shows each field once its configuration is there, and never the trusted issuers', async () => {
    const metadata = await metadataOf(configured);
    assert.deepEqual(metadata.dpop_signing_alg_values_supported, ['ES256', 'EdDSA']);
    assert.deepEqual(metadata.authorization_grant_profiles_supported, [ID_JAG_PROFILE]);
    assert.deepEqual(metadata.identity_chaining_requested_token_types_supported, [TOKEN_TYPES.idJag]);
    assert.equal(JSON.stringify(metadata).includes('idp.example.test'), false);
  });

  it("stores a configured client's workload identity with it (not used for authentication yet)", async () => {
    const found = await configured.store.clients.findByWorkload('https://oidc.example.test/cluster-1', 'system:serviceaccount:agents:planner');
    assert.equal(found?.clientId, 'planner');
    assert.deepEqual(found?.workloadIdentity?.claims, { 'kubernetes.io.namespace': 'agents' });
  });

  it('answers the jwt-bearer grant unsupported_grant_type unless configured (then the client must authenticate)', async () => {
    const plainRes = await postForm(`${plain.issuer}/token`, { grant_type: JWT_BEARER_GRANT, assertion: 'a.b.c' });
    assert.equal(plainRes.status, 400);
    assert.equal((plainRes.json as { error: string }).error, 'unsupported_grant_type');
    // Configured with platform issuers (WP-C), a request without client authentication is a SEP-1933
    // workload grant: an assertion that is no JWT is invalid_grant (an ID-JAG would need the client).
    const configuredRes = await postForm(`${configured.issuer}/token`, { grant_type: JWT_BEARER_GRANT, assertion: 'a.b.c' });
    assert.equal(configuredRes.status, 400);
    assert.equal((configuredRes.json as { error: string }).error, 'invalid_grant');
  });

  it('refuses a self-registered client asking for the jwt-bearer grant, audited with the reason', async () => {
    const res = await fetch(`${plain.issuer}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'jwt-bearer', token_endpoint_auth_method: 'client_secret_basic', grant_types: [JWT_BEARER_GRANT], redirect_uris: [] }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: string; error_description: string };
    assert.equal(body.error, 'invalid_client_metadata');
    assert.equal(body.error_description, `grant_type ${JWT_BEARER_GRANT} is not supported for self-registered clients`);
    await plain.ctx.audit.flush();
    const [event] = await plain.store.audit.list({ type: 'register.refused' });
    assert.equal(event?.error, 'invalid_client_metadata');
    assert.equal(event?.reason, 'jwt-bearer at self-registration (dynamic client)');
  });
});
