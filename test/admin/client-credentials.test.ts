import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { decodeJwt, postForm } from '../helpers/auth-server.ts';
import { startFakePlatformIssuer, type FakePlatformIssuer } from '../helpers/fake-platform-issuer.ts';
import { createDpopProof, generateDpopKey, type DpopKey } from '../../src/core/dpop.ts';
import { clientPage } from '../../src/auth-server/console/pages.ts';
import { api, auditEvents, signIn, startAdminServer } from './helpers.ts';

type Server = Awaited<ReturnType<typeof startAdminServer>>;

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const PLAIN_HTTP_ISSUER = 'http://platform.example.test';
const SA = (name: string) => `system:serviceaccount:agents:${name}`;

/**
 * The admin plane for issue 17's client fields: `workload_identity`, `dpop_bound_access_tokens`
 * and `sub_profile` read, created and changed through the admin API and the admin MCP server, each
 * refusal with its exact status, code and audited reason, and a change applied to the client's very
 * next token request (the client cache is dropped on write).
 */
describe('admin: workload identity, DPoP binding and entity profile of clients', () => {
  let as: Server;
  let platform: FakePlatformIssuer;
  let strict: FakePlatformIssuer;
  let alice: string;
  let key: DpopKey;

  before(async () => {
    [platform, strict] = await Promise.all([startFakePlatformIssuer(), startFakePlatformIssuer()]);
    key = await generateDpopKey();
    as = await startAdminServer({
      admin: { mcp: { writes: true } } as never,
      dpop: { enabled: true } as never,
      workload_identity: {
        issuers: [
          { issuer: platform.issuer, allow_loopback: true },
          // On the list but without allow_loopback: its http URL is refused for a client.
          { issuer: strict.issuer },
          { issuer: PLAIN_HTTP_ISSUER },
        ],
      } as never,
      clients: [
        { client_id: 'admin-test-console', client_name: 'Admin test console', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1:5999/callback'] },
        { client_id: 'configured-wl', workload_identity: { issuer: platform.issuer, subject: SA('configured') }, grant_types: ['client_credentials'], dpop_bound_access_tokens: true, sub_profile: 'service' },
        { client_id: 'secret-client', grant_types: ['client_credentials'] },
      ] as never,
    });
    const signedIn = await signIn(as, 'alice', { scope: 'admin:read admin:write' });
    assert.ok('accessToken' in signedIn);
    alice = signedIn.accessToken!;
  });
  after(async () => {
    await as?.close();
    await Promise.all([platform?.close(), strict?.close()]);
  });

  /** client_credentials with the platform JWT as the client assertion, with a DPoP proof when asked. */
  const tokenFor = async (clientId: string, subject: string, withProof = false) => {
    const headers: Record<string, string> = withProof ? { dpop: await createDpopProof(key, { htm: 'POST', htu: `${as.issuer}/token` }) } : {};
    const jwt = await platform.sign({ sub: subject, aud: as.issuer });
    return postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: clientId, client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: as.resource }, headers);
  };
  const lastEvent = async (type: string, clientId?: string) =>
    (await auditEvents(as)).filter((e) => e.type === type && (clientId === undefined || e.clientId === clientId)).sort((a, b) => b.at - a.at).at(0);

  it('GET shows the fields of a configured client', async () => {
    const res = await api(as, alice, 'GET', '/clients/configured-wl');
    assert.equal(res.status, 200);
    assert.deepEqual(
      [res.json.workload_identity, res.json.dpop_bound_access_tokens, res.json.sub_profile, res.json.token_endpoint_auth_method],
      [{ issuer: platform.issuer, subject: SA('configured'), claims: {} }, true, 'service', 'workload_identity'],
    );
    const plain = await api(as, alice, 'GET', '/clients/secret-client');
    assert.deepEqual([plain.json.workload_identity, plain.json.dpop_bound_access_tokens, plain.json.sub_profile], [null, false, null]);
  });

  it('creates a DPoP-bound workload client: a token request without a proof is refused (400 invalid_request, audited), with one it gets a DPoP token', async () => {
    const created = await api(as, alice, 'POST', '/clients', {
      client_id: 'wl-dpop',
      grant_types: ['client_credentials'],
      workload_identity: { issuer: platform.issuer, subject: SA('wl-dpop') },
      dpop_bound_access_tokens: true,
      sub_profile: 'ai_agent',
    });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.deepEqual(
      [created.json.client_secret, created.json.token_endpoint_auth_method, created.json.dpop_bound_access_tokens, created.json.sub_profile, created.json.workload_identity],
      [null, 'workload_identity', true, 'ai_agent', { issuer: platform.issuer, subject: SA('wl-dpop'), claims: {} }],
    );
    const refused = await tokenFor('wl-dpop', SA('wl-dpop'));
    assert.deepEqual([refused.status, refused.json.error], [400, 'invalid_request'], refused.text);
    assert.equal((await lastEvent('token.refused', 'wl-dpop'))?.reason, 'no DPoP proof from a dpop_bound_access_tokens client');
    const bound = await tokenFor('wl-dpop', SA('wl-dpop'), true);
    assert.equal(bound.status, 200, bound.text);
    assert.equal(bound.json.token_type, 'DPoP');
    const claims = decodeJwt(bound.json.access_token as string);
    assert.equal(typeof (claims.cnf as { jkt?: string }).jkt, 'string');
    assert.equal(claims.sub_profile, 'ai_agent', "the client's own token says what kind of entity it is");
  });

  it('PATCH dpop_bound_access_tokens applies to the next token request, audited', async () => {
    const off = await api(as, alice, 'PATCH', '/clients/wl-dpop', { dpop_bound_access_tokens: false });
    assert.deepEqual([off.status, off.json.dpop_bound_access_tokens], [200, false]);
    const bearer = await tokenFor('wl-dpop', SA('wl-dpop'));
    assert.equal(bearer.status, 200, bearer.text);
    assert.equal(bearer.json.token_type, 'Bearer');
    assert.deepEqual((await lastEvent('client.dpop_binding_changed', 'wl-dpop'))?.data, { dpop_bound_access_tokens: false });
    const update = await lastEvent('admin.clients.update', 'wl-dpop');
    assert.deepEqual([update?.outcome, (update?.data as { change?: string[] }).change], ['success', ['dpop_bound_access_tokens']]);

    const on = await api(as, alice, 'PATCH', '/clients/wl-dpop', { dpop_bound_access_tokens: true });
    assert.equal(on.status, 200);
    const again = await tokenFor('wl-dpop', SA('wl-dpop'));
    assert.deepEqual([again.status, again.json.error], [400, 'invalid_request'], 'refused at once: no cached copy of the client lets it through');
  });

  it('PATCH workload_identity: the old platform subject is refused at once (401 invalid_client, audited), the new one works', async () => {
    await api(as, alice, 'PATCH', '/clients/wl-dpop', { dpop_bound_access_tokens: false });
    assert.equal((await tokenFor('wl-dpop', SA('wl-dpop'))).status, 200);
    const moved = await api(as, alice, 'PATCH', '/clients/wl-dpop', { workload_identity: { issuer: platform.issuer, subject: SA('wl-dpop-v2'), claims: { 'kubernetes.io.namespace': 'agents' } } });
    assert.equal(moved.status, 200, JSON.stringify(moved.json));
    assert.deepEqual(moved.json.workload_identity, { issuer: platform.issuer, subject: SA('wl-dpop-v2'), claims: { 'kubernetes.io.namespace': 'agents' } });
    const old = await tokenFor('wl-dpop', SA('wl-dpop'));
    assert.deepEqual([old.status, old.json.error], [401, 'invalid_client'], old.text);
    assert.equal((await lastEvent('client.auth_failed', 'wl-dpop'))?.reason, `workload JWT sub ${SA('wl-dpop')} is not the workload identity of wl-dpop`);
    const jwt = await platform.sign({ sub: SA('wl-dpop-v2'), aud: as.issuer, 'kubernetes.io': { namespace: 'agents' } });
    const fresh = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: 'wl-dpop', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: as.resource });
    assert.equal(fresh.status, 200, fresh.text);
    const changed = await lastEvent('client.workload_identity_changed', 'wl-dpop');
    assert.deepEqual(changed?.data, { issuer: platform.issuer, subject: SA('wl-dpop-v2'), previous_issuer: platform.issuer, previous_subject: SA('wl-dpop') });
  });

  const refusals: [string, string, string, unknown, number, string, string][] = [
    [
      'an issuer off the allow-list',
      'POST',
      '/clients',
      { client_id: 'wl-x1', workload_identity: { issuer: 'https://unknown-platform.example', subject: 'x' } },
      400,
      'invalid_request',
      'invalid input: workload_identity.issuer https://unknown-platform.example is not listed in workload_identity.issuers',
    ],
    [
      'a plain http issuer (not loopback)',
      'POST',
      '/clients',
      { client_id: 'wl-x2', workload_identity: { issuer: PLAIN_HTTP_ISSUER, subject: 'x' } },
      400,
      'invalid_request',
      `invalid input: workload_identity.issuer must be an https URL (http only for a loopback issuer with allow_loopback), got ${PLAIN_HTTP_ISSUER}`,
    ],
    [
      'a loopback http issuer whose entry has no allow_loopback',
      'POST',
      '/clients',
      { client_id: 'wl-x3', workload_identity: { issuer: 'STRICT', subject: 'x' } },
      400,
      'invalid_request',
      'invalid input: workload_identity.issuer must be an https URL (http only for a loopback issuer with allow_loopback), got STRICT',
    ],
    [
      'an identity another client holds',
      'POST',
      '/clients',
      { client_id: 'wl-x4', workload_identity: { issuer: 'PLATFORM', subject: SA('configured') } },
      409,
      'conflict',
      `workload identity ${SA('configured')} of PLATFORM belongs to client configured-wl`,
    ],
    [
      'a workload identity for a configured client',
      'PATCH',
      '/clients/secret-client',
      { workload_identity: { issuer: 'PLATFORM', subject: 'x' } },
      409,
      'conflict',
      'this client comes from the configuration file; change it there',
    ],
    [
      'a change to a configured client',
      'PATCH',
      '/clients/configured-wl',
      { dpop_bound_access_tokens: false },
      409,
      'conflict',
      'this client comes from the configuration file; change it there',
    ],
    ['a non-boolean dpop_bound_access_tokens', 'PATCH', '/clients/wl-dpop', { dpop_bound_access_tokens: 'yes' }, 400, 'invalid_request', 'invalid input: dpop_bound_access_tokens: Invalid input: expected boolean, received string'],
  ];
  for (const [name, method, path, rawBody, status, code, description] of refusals) {
    it(`refuses ${name}: ${status} ${code}, audited with the reason`, async () => {
      const fill = (text: string) => text.replaceAll('PLATFORM', platform.issuer).replaceAll('STRICT', strict.issuer);
      const body = JSON.parse(fill(JSON.stringify(rawBody))) as Record<string, unknown>;
      const res = await api(as, alice, method, path, body);
      assert.equal(res.status, status, JSON.stringify(res.json));
      assert.deepEqual([res.json.error, res.json.error_description], [code, fill(description)]);
      const op = method === 'POST' ? 'admin.clients.create' : 'admin.clients.update';
      const event = (await auditEvents(as)).filter((e) => e.type === op && e.outcome === 'failure').sort((a, b) => b.at - a.at)[0];
      assert.equal(event?.error, code);
      // A configured client's refusal is audited with why; every other refusal with its description.
      assert.equal(event?.reason, code === 'conflict' && path !== '/clients' ? 'client is defined in the configuration file' : fill(description));
    });
  }

  it('refuses a workload identity on a client that authenticates otherwise (400 invalid_request)', async () => {
    const created = await api(as, alice, 'POST', '/clients', { client_id: 'admin-secret', grant_types: ['client_credentials'] });
    assert.equal(created.status, 201);
    const res = await api(as, alice, 'PATCH', '/clients/admin-secret', { workload_identity: { issuer: platform.issuer, subject: SA('admin-secret') } });
    assert.deepEqual(
      [res.status, res.json.error, res.json.error_description],
      [400, 'invalid_request', 'invalid input: workload_identity: admin-secret authenticates with client_secret_basic, not a workload identity; create a new client for a platform identity'],
    );
    const event = await lastEvent('admin.clients.update', 'admin-secret');
    assert.deepEqual([event?.outcome, event?.error, event?.reason], ['failure', 'invalid_request', res.json.error_description]);
    assert.equal((await as.store.clients.find('admin-secret'))?.workloadIdentity, undefined, 'nothing written');
  });

  it('the admin MCP server edits the same fields (clients_update), audited as the admin', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${as.issuer}/admin/mcp`), { requestInit: { headers: { authorization: `Bearer ${alice}` } } });
    const client = new Client({ name: 'admin-fields-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      const tools = await client.listTools();
      const update = tools.tools.find((t) => t.name === 'clients_update');
      const properties = (update?.inputSchema.properties ?? {}) as Record<string, unknown>;
      assert.ok(properties.workload_identity && properties.dpop_bound_access_tokens && properties.sub_profile, 'the tool takes the new fields');
      const result = (await client.callTool({ name: 'clients_update', arguments: { id: 'wl-dpop', dpop_bound_access_tokens: true, sub_profile: 'service' } })) as { isError?: boolean; structuredContent?: Record<string, unknown> };
      assert.notEqual(result.isError, true, JSON.stringify(result));
      assert.deepEqual([result.structuredContent?.dpop_bound_access_tokens, result.structuredContent?.sub_profile], [true, 'service']);
      const refused = (await client.callTool({ name: 'clients_update', arguments: { id: 'wl-dpop', workload_identity: { issuer: 'https://unknown-platform.example', subject: 'x' } } })) as { isError?: boolean; content: { text?: string }[] };
      assert.equal(refused.isError, true);
      assert.match(refused.content[0]?.text ?? '', /invalid_request/);
      const event = await lastEvent('admin.clients.update', 'wl-dpop');
      assert.deepEqual([event?.outcome, event?.error, event?.data?.front_end], ['failure', 'invalid_request', 'mcp']);
    } finally {
      await client.close();
    }
    const jwt = await platform.sign({ sub: SA('wl-dpop-v2'), aud: as.issuer, 'kubernetes.io': { namespace: 'agents' } });
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: 'wl-dpop', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: as.resource });
    assert.deepEqual([res.status, res.json.error], [400, 'invalid_request'], 'the MCP change applies at once too');
  });

  it("the console's client page shows the fields", async () => {
    const view = (await api(as, alice, 'GET', '/clients/wl-dpop')).json as unknown as Parameters<typeof clientPage>[1];
    const page = String(await clientPage('csrf', view));
    assert.match(page, /<dd id="client-dpop">required/);
    assert.match(page, /<dd id="client-profile"><code>service<\/code>/);
    assert.ok(page.includes(`<code>${SA('wl-dpop-v2')}</code> of <code>${platform.issuer}</code>`));
  });
});
