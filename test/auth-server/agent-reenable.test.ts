import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ACCESS_TOKEN_TYP, signJwt } from '../../src/core/jwt.ts';
import { adminAccess } from '../helpers/admin.ts';
import { postForm } from '../helpers/auth-server.ts';
import { R, auth, startDelegationServer } from '../helpers/delegation-server.ts';

/**
 * Issue 11 item 6: another instance may issue an agent tokens until it learns of the disable (its
 * client cache). Re-enabling must not revive those: the cut-off moves past that window.
 */
describe('re-enabling a disabled agent revives none of its tokens, whichever instance issued them', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  before(async () => {
    as = await startDelegationServer();
  });
  after(() => as.close());

  const patch = async (enabled: boolean) => {
    const answer = await (await adminAccess(as)).api('PATCH', '/agents/sample-agent', { enabled });
    assert.equal(answer.status, 200, answer.text);
    return answer.json;
  };
  const active = async (token: string) => (await postForm(`${as.issuer}/introspect`, { token }, auth.mcp)).json.active;
  const agentToken = () => postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);

  it('a token issued after the disable by a lagging instance stays dead after re-enabling; new tokens work', async () => {
    const before = (await agentToken()).json.access_token as string;
    assert.equal(await active(before), true);
    const disabled = (await patch(false)) as { disabled_at: number };
    const disabledAt = disabled.disabled_at;
    // Let a second pass, so the lagging instance's token is stamped after the disable.
    for (let i = 0; i < 300 && as.ctx.now() <= disabledAt; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(as.ctx.now() > disabledAt);
    // What an instance whose client cache still held the enabled agent would have issued.
    const now = as.ctx.now();
    const lagging = await signJwt(as.ctx.keys, { iss: as.issuer, sub: 'sample-agent', aud: R.agent, iat: now, exp: now + 600, jti: crypto.randomUUID(), client_id: 'sample-agent', scope: 'banking:read' }, ACCESS_TOKEN_TYP);
    assert.equal(await active(lagging), false, 'dead while the agent is disabled');

    const enabled = (await patch(true)) as { enabled: boolean; tokens_valid_after: number };
    assert.equal(enabled.enabled, true);
    assert.ok(enabled.tokens_valid_after >= now, `the cut-off (${enabled.tokens_valid_after}) covers tokens issued after the disable (${now})`);
    assert.equal(await active(before), false, 'issued before the disable: dead');
    assert.equal(await active(lagging), false, 'issued by a lagging instance after the disable: dead too');
    const list = (await (await fetch(`${as.issuer}/revocations`, { headers: auth.mcp })).json()) as { clients: { client_id: string; disabled_at: number | null; tokens_valid_after: number }[] };
    const listed = list.clients.find((c) => c.client_id === 'sample-agent')!;
    assert.equal(listed.disabled_at, null);
    assert.equal(listed.tokens_valid_after, enabled.tokens_valid_after, 'gateways get the same cut-off');

    // The second of re-enabling may be inside the cut-off: a token issued after it works.
    for (let i = 0; i < 300; i++) {
      const fresh = await agentToken();
      if (fresh.status === 200 && (await active(fresh.json.access_token as string)) === true) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.fail('no working token after re-enabling');
  });
});

/** Issue 12: the admin API said `first_used_at: null` for an agent used many times. */
describe('the admin API records when an agent was first used', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  before(async () => {
    as = await startDelegationServer();
  });
  after(() => as.close());

  const view = async () => (await (await adminAccess(as)).api('GET', '/agents/sample-agent')).json as { first_used_at: number | null };

  it('null until the agent authenticates; then the first use, which later uses (and a wrong secret) leave as it is', async () => {
    assert.equal((await view()).first_used_at, null);
    const wrong = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, { authorization: `Basic ${Buffer.from('sample-agent:not-the-secret').toString('base64')}` });
    assert.equal(wrong.status, 401);
    assert.equal((await view()).first_used_at, null, 'a failed authentication is not a use');
    const before = as.ctx.now();
    assert.equal((await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent)).status, 200);
    const first = (await view()).first_used_at;
    assert.ok(typeof first === 'number' && first >= before && first <= as.ctx.now(), `first_used_at ${first}`);
    for (let i = 0; i < 300 && as.ctx.now() <= first; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    for (let i = 0; i < 3; i++) assert.equal((await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent)).status, 200);
    assert.equal((await view()).first_used_at, first);
    // The store keeps the first use even when another instance (whose cached record was not touched) records one.
    await as.ctx.store.clients.touch('sample-agent', as.ctx.now() + 100);
    assert.equal((await as.ctx.store.clients.list()).find((c) => c.clientId === 'sample-agent')?.lastUsedAt, first);
  });
});
