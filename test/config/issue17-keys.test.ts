import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import { gatewayConfigSchema, mcpRoute } from '../../src/config/gateway-schema.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

const route = { path: '/mcp', upstream: 'http://127.0.0.1:1/mcp', resource: 'http://localhost:8080/mcp', authorization_servers: ['http://localhost:9000'] };

describe('issue 17 configuration keys', () => {
  it('everything new is off by default (an existing file means what it meant)', () => {
    const config = authServerConfigSchema.parse({ clients: [{ client_id: 'c' }], resources: [{ id: 'http://localhost:8080/mcp', name: 'r' }] });
    assert.equal(config.dpop.enabled, false);
    assert.equal(config.dpop.require_nonce, false);
    assert.deepEqual(config.dpop.signing_alg_values, ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA']);
    assert.deepEqual(config.trusted_idps, []);
    assert.deepEqual(config.id_jag, { lifetime_seconds: 300, audiences: [] });
    assert.deepEqual(config.workload_identity, { issuers: [] });
    assert.equal(config.resources[0]!.require_dpop, false);
    assert.equal(config.clients[0]!.dpop_bound_access_tokens, false);
    assert.equal(config.clients[0]!.sub_profile, undefined);
    assert.equal(config.clients[0]!.workload_identity, undefined);
    assert.deepEqual(config.clients[0]!.grant_types, ['authorization_code', 'refresh_token']);

    const gateway = gatewayConfigSchema.parse({ routes: [{ ...route, mediation: { client_id: 'gw', client_secret_env: 'S', resource: 'http://127.0.0.1:1/mcp' } }] });
    const r = mcpRoute(gateway.routes[0]!);
    assert.equal(r.dpop.mode, 'off');
    assert.equal(r.dpop.content_digest, 'verify');
    assert.equal(r.dpop.replay, true);
    assert.deepEqual(r.actor_profile, { required: false, authorization_required: false });
    assert.equal(r.mediation?.dpop, false);
    assert.equal(gateway.dpop_nonce_key_env, 'MANDATE_GATEWAY_DPOP_NONCE_KEY');
  });

  it('takes the keys of a full issue 17 file', () => {
    const config = authServerConfigSchema.parse({
      issuer: 'https://mcp-as.example.com',
      dpop: { enabled: true, require_nonce: true },
      trusted_idps: [{ issuer: 'https://idp.example.com', clients: ['agent-1'], link: { claims: ['email'], email_domains: ['example.com'] }, jit_users: true }],
      id_jag: { audiences: [{ audience: 'https://other-as.example.com', resources: ['https://mcp.example.com/mcp'], clients: ['agent-1'], client_id: { 'agent-1': 'a1' } }] },
      workload_identity: { issuers: [{ issuer: 'https://oidc.example/cluster-1', require_jti: false }] },
      agents: [
        {
          client_id: 'planner',
          sub_profile: 'service',
          dpop_bound_access_tokens: true,
          grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'],
          workload_identity: { issuer: 'https://oidc.example/cluster-1', subject: 'system:serviceaccount:agents:planner', claims: { 'kubernetes.io.namespace': 'agents' } },
        },
      ],
    });
    assert.deepEqual(config.trusted_idps[0]!.link, { claims: ['email'], local_sub: false, email_domains: ['example.com'], local_users: false });
    assert.deepEqual(config.trusted_idps[0]!.algorithms, ['ES256', 'RS256']);
    assert.equal(config.trusted_idps[0]!.max_lifetime_seconds, 600);
    assert.equal(config.trusted_idps[0]!.require_resource, true);
    assert.equal(config.workload_identity.issuers[0]!.max_lifetime_seconds, 3600);
    assert.equal(config.agents[0]!.workload_identity?.subject, 'system:serviceaccount:agents:planner');
  });

  it('refuses this server as its own IdP or ID-JAG audience, and unsound workload identities, naming the path', () => {
    const refused = (input: unknown, pattern: RegExp) =>
      assert.throws(() => parseConfig(authServerConfigSchema, input, 'test.yaml'), (e: Error) => e instanceof ConfigError && pattern.test(e.message), JSON.stringify(input));
    refused({ issuer: 'https://as.example', trusted_idps: [{ issuer: 'https://as.example/' }] }, /trusted_idps\.0\.issuer: a trusted IdP cannot be this server itself/);
    refused(
      { issuer: 'https://as.example', id_jag: { audiences: [{ audience: 'https://as.example', resources: ['https://r.example'], clients: ['c'] }] } },
      /id_jag\.audiences\.0\.audience: an ID-JAG audience cannot be this server itself/,
    );
    const workload = { issuer: 'https://oidc.example/c1', subject: 'system:serviceaccount:a:b' };
    refused({ clients: [{ client_id: 'c', workload_identity: workload }] }, /clients\.0\.workload_identity\.issuer: c: workload issuer https:\/\/oidc\.example\/c1 is not listed/);
    const issuers = { issuers: [{ issuer: 'https://oidc.example/c1' }] };
    refused({ workload_identity: issuers, clients: [{ client_id: 'c', client_secret_env: 'X', workload_identity: workload }] }, /clients\.0\.client_secret_env: c: a client with workload_identity has no client_secret_env/);
    refused(
      { workload_identity: issuers, clients: [{ client_id: 'c', workload_identity: workload }], agents: [{ client_id: 'd', workload_identity: workload }] },
      /agents\.0\.workload_identity\.subject: d: workload identity system:serviceaccount:a:b of https:\/\/oidc\.example\/c1 is already c's/,
    );
    refused({ clients: [{ client_id: 'c', sub_profile: ' ai_agent' }] }, /clients\.0\.sub_profile/);
    refused({ dpop: { signing_alg_values: ['HS256'] } }, /dpop\.signing_alg_values/);
    refused({ trusted_idps: [{ issuer: 'https://idp.example', algorithms: ['none'] }] }, /trusted_idps\.0\.algorithms/);
    assert.throws(() => parseConfig(gatewayConfigSchema, { routes: [{ ...route, dpop: { mode: 'sometimes' } }] }, 'g.yaml'), /routes\.0\.dpop\.mode/);
    // And the sound one passes.
    assert.doesNotThrow(() => parseConfig(authServerConfigSchema, { workload_identity: issuers, clients: [{ client_id: 'c', workload_identity: workload }] }, 'test.yaml'));
  });
});
