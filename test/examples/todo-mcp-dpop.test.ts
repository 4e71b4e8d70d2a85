import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTodoMcpServer, todoMcpDpopMode, type TodoMcpServer } from '../../examples/todo-mcp/server.ts';
import type { TodoMcpRefusal } from '../../examples/todo-mcp/mcp.ts';
import { createDpopProof, generateDpopKey, type DpopKey } from '../../src/core/dpop.ts';
import { decodeJwt, freePort, pkcePair, postForm } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { AGENT_REDIRECT, R, SECRETS, auth, startDelegationServer } from '../helpers/delegation-server.ts';
import { MCP_HEADERS } from '../helpers/gateway.ts';

const ALGS = 'ES256 ES384 PS256 RS256 EdDSA';
/** The Todo MCP server's public metadata URL: from its resource (R.mcp), whatever address it listens on. */
const PRM = 'https://todo-mcp.test/.well-known/oauth-protected-resource/mcp';

/**
 * The self-protected Todo MCP server with DPoP-bound tokens (RFC 9449 §7): by default (`allow`)
 * Bearer tokens work as before and `Authorization: DPoP` with its proof is checked against the
 * server's public URL (htm, htu, iat, ath, content_digest over the body, jti once, cnf.jkt); `require`
 * takes DPoP only; `off` Bearer only. A DPoP-bound token sent as Bearer is refused in every mode.
 * Each refusal: the exact status, error, WWW-Authenticate and the reason the server logs.
 */
describe('Todo MCP server: DPoP-bound access tokens', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  const servers: Record<'allow' | 'require' | 'off', TodoMcpServer> = {} as never;
  const refusals: Record<string, TodoMcpRefusal[]> = { allow: [], require: [], off: [] };
  let key: DpopKey;
  let bound: string;
  let plain: string;
  const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });

  /** The user signs in through the sample agent for the Todo MCP server; the code redeemed with a DPoP proof when `key` is given. */
  const userToken = async (dpopKey?: DpopKey) => {
    const { verifier, challenge } = pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'sample-agent', redirect_uri: AGENT_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: R.mcp, scope: 'todo_api:read', state: 's' })}`;
    const back = await new FormBrowser(as.issuer).authorize(url);
    const headers = { ...auth.agent, ...(dpopKey ? { dpop: await createDpopProof(dpopKey, { htm: 'POST', htu: `${as.issuer}/token` }) } : {}) };
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: AGENT_REDIRECT }, headers);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, dpopKey ? 'DPoP' : 'Bearer');
    return res.json.access_token as string;
  };
  /** POSTs an MCP message; `proof` options make the DPoP proof (default: right for this request). */
  const post = async (
    mode: keyof typeof servers,
    token: string | undefined,
    scheme: 'Bearer' | 'DPoP',
    proof: { htu?: string; key?: DpopKey; body?: string; none?: boolean; reuse?: string } = {},
    body = initialize,
  ) => {
    const headers: Record<string, string> = { ...MCP_HEADERS };
    if (token) headers.authorization = `${scheme} ${token}`;
    let sent: string | undefined;
    if (scheme === 'DPoP' && !proof.none) {
      sent = proof.reuse ?? (await createDpopProof(proof.key ?? key, { htm: 'POST', htu: proof.htu ?? R.mcp, accessToken: token, body: new TextEncoder().encode(proof.body ?? body) }));
      headers.dpop = sent;
    }
    const res = await fetch(servers[mode].url, { method: 'POST', headers, body });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: JSON.parse(text) as Record<string, unknown>, proof: sent };
  };
  const lastRefusal = (mode: string) => refusals[mode]!.at(-1);

  before(async () => {
    as = await startDelegationServer({
      dpop: { enabled: true },
      resources: [
        // As in the demo: the Todo MCP server is its resource's resource server, so it may exchange the bound tokens it receives.
        { id: R.mcp, name: 'Todo MCP server', scopes: [{ name: 'todo_api:read' }, { name: 'todo_api:write' }], may_act: { client_id: 'mcp-server' }, resource_servers: ['mcp-server'] },
        { id: R.api, name: 'Todo API', scopes: [{ name: 'todo_api:read' }, { name: 'todo_api:write' }], exchange: { allowed_actors: ['mcp-server'], max_depth: 1 } },
      ],
    });
    const common = { issuer: as.issuer, resource: R.mcp, todoApi: R.api, clientId: 'mcp-server', clientSecret: SECRETS.mcp, host: '127.0.0.1' };
    for (const mode of ['allow', 'require', 'off'] as const) {
      // `allow` from the default: no option, no TODO_MCP_DPOP.
      servers[mode] = await startTodoMcpServer({ ...common, port: await freePort(), onRefusal: (r) => refusals[mode]!.push(r), ...(mode === 'allow' ? {} : { dpop: mode }) });
    }
    key = await generateDpopKey();
    bound = await userToken(key);
    plain = await userToken();
  });
  after(async () => {
    await Promise.all(Object.values(servers).map((s) => s.close()));
    await as.close();
  });

  it('the default is allow (TODO_MCP_DPOP unset); an unknown TODO_MCP_DPOP refuses the start', () => {
    assert.equal(todoMcpDpopMode(undefined, undefined), 'allow');
    assert.equal(todoMcpDpopMode(undefined, 'require'), 'require');
    assert.equal(todoMcpDpopMode('off', 'require'), 'off', 'the option wins');
    assert.throws(() => todoMcpDpopMode(undefined, 'on'), /TODO_MCP_DPOP must be one of off, allow, require, got "on"/);
  });

  it('allow: no token → 401 with a Bearer then a DPoP challenge; the metadata lists the proof algorithms', async () => {
    const res = await post('allow', undefined, 'Bearer');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_request');
    assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${PRM}", DPoP algs="${ALGS}", resource_metadata="${PRM}"`);
    const prm = (await (await fetch(`${servers.allow.url.replace(/\/mcp$/, '')}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.deepEqual(prm.dpop_signing_alg_values_supported, ALGS.split(' '));
    assert.equal(prm.dpop_bound_access_tokens_required, undefined);
  });

  it('allow: a Bearer token works as before; a DPoP-bound token with its proof works, and the tools see its cnf', async () => {
    assert.equal((await post('allow', plain, 'Bearer')).status, 200);
    const init = await post('allow', bound, 'DPoP');
    assert.equal(init.status, 200, JSON.stringify(init.json));
    const call = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'who_am_I', arguments: {} } });
    const res = await post('allow', bound, 'DPoP', {}, call);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const claims = JSON.parse((res.json.result as { content: { text: string }[] }).content[0]!.text) as Record<string, unknown>;
    assert.deepEqual(claims.cnf, decodeJwt(bound).cnf);
    assert.equal(claims.sub_profile, 'user');
  });

  it("allow: a tool that needs the Todo API exchanges the DPoP-bound user token (the server's own exchange, RFC 8693)", async () => {
    const call = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'peek_api_token_claims', arguments: {} } });
    const res = await post('allow', bound, 'DPoP', {}, call);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const result = res.json.result as { isError?: boolean; content: { text: string }[] };
    assert.notEqual(result.isError, true, result.content[0]?.text);
    const claims = JSON.parse(result.content[0]!.text) as Record<string, unknown>;
    assert.deepEqual([claims.aud, claims.sub, claims.sub_profile, (claims.act as { sub: string; sub_profile: string }).sub], [R.api, decodeJwt(bound).sub, 'user', 'mcp-server']);
  });

  for (const mode of ['allow', 'require', 'off'] as const) {
    it(`${mode}: a DPoP-bound token sent as Bearer → 401 invalid_token (never a downgrade)`, async () => {
      const res = await post(mode, bound, 'Bearer');
      assert.equal(res.status, 401);
      assert.equal(res.json.error, 'invalid_token');
      assert.equal(
        res.headers.get('www-authenticate'),
        `Bearer resource_metadata="${PRM}", error="invalid_token", error_description="the access token is DPoP-bound: present it with the DPoP scheme and a proof"`,
      );
      assert.deepEqual(lastRefusal(mode), { status: 401, error: 'invalid_token', reason: 'a DPoP-bound access token (cnf.jkt) was presented with the Bearer scheme' });
    });
  }

  const proofRefusals: [string, () => Promise<Parameters<typeof post>[3]>, string, string, string][] = [
    ['no DPoP header', async () => ({ none: true }), 'invalid_dpop_proof', 'the DPoP proof is invalid', 'no DPoP proof'],
    ['a proof for the URL the request reached (the Host header), not the public one', async () => ({ htu: `${servers.allow.url}` }), 'invalid_dpop_proof', 'the DPoP proof is invalid', 'the DPoP proof htu does not match the request URL'],
    ['a proof over another body (content_digest)', async () => ({ body: '{"jsonrpc":"2.0","id":9,"method":"tools/list"}' }), 'invalid_dpop_proof', 'the DPoP proof is invalid', 'the DPoP proof content_digest does not match the body'],
    ['a proof by another key than the token is bound to', async () => ({ key: await generateDpopKey() }), 'invalid_token', 'the access token is not bound to the key of this proof', "the proof's key is not the key the access token is bound to (cnf.jkt)"],
  ];
  for (const [name, make, error, description, reason] of proofRefusals) {
    it(`allow: ${name} → 401 ${error} with a DPoP challenge`, async () => {
      const res = await post('allow', bound, 'DPoP', await make());
      assert.equal(res.status, 401);
      assert.equal(res.json.error, error);
      assert.equal(res.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="${PRM}", error="${error}", error_description="${description}"`);
      assert.deepEqual(lastRefusal('allow'), { status: 401, error, reason });
    });
  }

  it('allow: a replayed proof → 401 invalid_dpop_proof', async () => {
    const first = await post('allow', bound, 'DPoP');
    assert.equal(first.status, 200);
    const again = await post('allow', bound, 'DPoP', { reuse: first.proof });
    assert.equal(again.status, 401);
    assert.equal(again.json.error, 'invalid_dpop_proof');
    assert.deepEqual(lastRefusal('allow'), { status: 401, error: 'invalid_dpop_proof', reason: 'the DPoP proof jti was used before' });
  });

  it('allow: an unbound token with the DPoP scheme → 401 invalid_token', async () => {
    const res = await post('allow', plain, 'DPoP');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_token');
    assert.equal(lastRefusal('allow')!.reason, 'the access token is not DPoP-bound (no cnf.jkt) but was presented with the DPoP scheme');
  });

  it('require: DPoP-bound tokens only — a Bearer token → 401 invalid_token with a DPoP challenge; the metadata says so', async () => {
    const none = await post('require', undefined, 'Bearer');
    assert.equal(none.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="${PRM}"`);
    const res = await post('require', plain, 'Bearer');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_token');
    assert.equal(res.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="${PRM}", error="invalid_token", error_description="this resource requires a DPoP-bound access token"`);
    assert.deepEqual(lastRefusal('require'), { status: 401, error: 'invalid_token', reason: 'this resource accepts DPoP-bound access tokens only' });
    assert.equal((await post('require', bound, 'DPoP')).status, 200);
    const prm = (await (await fetch(`${servers.require.url.replace(/\/mcp$/, '')}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.equal(prm.dpop_bound_access_tokens_required, true);
  });

  it('off: today\'s behaviour — Bearer only; the DPoP scheme → 401 invalid_request, a Bearer challenge', async () => {
    assert.equal((await post('off', plain, 'Bearer')).status, 200);
    const none = await post('off', undefined, 'Bearer');
    assert.equal(none.headers.get('www-authenticate'), `Bearer resource_metadata="${PRM}"`);
    const res = await post('off', bound, 'DPoP');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_request');
    assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${PRM}", error="invalid_request"`);
    assert.deepEqual(lastRefusal('off'), { status: 401, error: 'invalid_request', reason: 'Authorization is not a token of an accepted scheme' });
  });
});
