import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, decodeJwt, pkcePair, postForm, type TestAuthServer } from '../helpers/auth-server.ts';
import { exchange } from '../helpers/delegation-server.ts';
import { AGENT, BANK, REDIRECT, SECRETS, auditEvents, call, create, decide, hashOf, signIn, startTransactionServer, use } from './helpers.ts';

/**
 * RFC 9396 Rich Authorization Requests at the authorization server (issue 14, part 3;
 * docs/high-risk-actions.md "RAR: the approval in the token"): an agent exchanges or refreshes its
 * token with `authorization_details` of type `mcp_tool_call` naming an approved transaction, and
 * gets a token carrying the approved action, no longer-lived than the transaction. Every refusal
 * is checked by status, error code and the reason in the audit log.
 */
describe('transactions: authorization_details (RFC 9396) at the token endpoint', () => {
  let as: TestAuthServer;
  const agentAuth = basic('sample-agent', SECRETS.agent);
  const otherAuth = basic('other-agent', SECRETS.otherAgent);
  const now = () => Math.floor(Date.now() / 1000);
  const HASH = hashOf({ amount: 250, to: 'Bob' });
  const details = (...ids: string[]) => JSON.stringify(ids.map((id) => ({ type: 'mcp_tool_call', transaction_id: id })));

  /** demo signed in through an agent for the agent's own resource (may_act: the agent), the browser kept. */
  let demoAtAgent: { accessToken: string; browser: FormBrowser };
  let bobAtAgent: { accessToken: string; browser: FormBrowser };
  let otherAtAgent: { accessToken: string; browser: FormBrowser };

  before(async () => {
    as = await startTransactionServer();
    demoAtAgent = await signIn(as, { clientId: 'sample-agent', secret: SECRETS.agent, resource: AGENT });
    bobAtAgent = await signIn(as, { username: 'bob', clientId: 'sample-agent', secret: SECRETS.agent, resource: AGENT });
    otherAtAgent = await signIn(as, { clientId: 'other-agent', secret: SECRETS.otherAgent, resource: AGENT, browser: demoAtAgent.browser });
  });
  after(async () => {
    await as?.close();
  });

  /** The agent's token at the bank: the exchange the gateway's caller made (act: [sample-agent]). */
  const bankToken = async (subject = demoAtAgent.accessToken, authorization = agentAuth) => {
    const res = await exchange(as, { subject_token: subject, resource: BANK }, { authorization });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  };
  /** A transaction the gateway created for `token`'s call, decided by `browser`'s user (or left pending). */
  const transaction = async (token: string, decision: 'approve' | 'deny' | 'pending' = 'approve', browser = demoAtAgent.browser, overrides: Record<string, unknown> = {}) => {
    const res = await create(as, token, overrides);
    assert.equal(res.status, 201, res.text);
    const id = res.json.id as string;
    if (decision !== 'pending') await decide(browser, id, decision);
    return { id, expiresAt: res.json.expires_at as number };
  };
  /** The exchange an agent repeats with authorization_details. */
  const rarExchange = (authorizationDetails: string, subject = demoAtAgent.accessToken, authorization = agentAuth) =>
    exchange(as, { subject_token: subject, resource: BANK, authorization_details: authorizationDetails }, { authorization });
  const latest = async (type: string, where: (e: Awaited<ReturnType<typeof auditEvents>>[number]) => boolean = () => true) => {
    const found = (await auditEvents(as)).find((e) => e.type === type && where(e));
    assert.ok(found, `an audit event ${type}`);
    return found;
  };
  /** A refusal: 400 invalid_authorization_details, and the audit says why. */
  const refusedWith = async (res: { status: number; json: Record<string, unknown>; text: string }, description: RegExp, type: string, reason: RegExp) => {
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_authorization_details');
    assert.match(res.json.error_description as string, description);
    assert.equal(res.json.access_token, undefined);
    const event = await latest(type);
    assert.equal(event.error, 'invalid_authorization_details');
    assert.match(event.reason!, reason);
    return event;
  };

  it('the metadata lists mcp_tool_call', async () => {
    const res = await call(as, 'GET', '/.well-known/oauth-authorization-server');
    assert.deepEqual(res.json.authorization_details_types_supported, ['mcp_tool_call']);
  });

  describe('token exchange', () => {
    it('an approved transaction: the token carries the approved action and ends with the transaction; the response echoes it; audited', async () => {
      const token = await bankToken();
      const tx = await transaction(token, 'approve', demoAtAgent.browser, { lifetime_seconds: 120 });
      const res = await rarExchange(details(tx.id));
      assert.equal(res.status, 200, res.text);
      const expected = [{ type: 'mcp_tool_call', transaction_id: tx.id, resource: BANK, tool: 'transfer', arguments_hash: HASH }];
      assert.deepEqual(res.json.authorization_details, expected, 'RFC 9396 §7: the response says what the token carries');
      const claims = decodeJwt(res.json.access_token as string);
      assert.deepEqual(claims.authorization_details, expected);
      assert.equal(claims.exp, tx.expiresAt, 'no longer than the transaction (shorter than the resource TTL)');
      assert.ok((res.json.expires_in as number) <= 120 && (res.json.expires_in as number) >= 115);
      assert.deepEqual(claims.act, { sub: 'sample-agent', iss: claims.iss, sub_profile: 'ai_agent', client_id: 'sample-agent' });
      assert.equal(claims.client_id, 'sample-agent');
      assert.equal(claims.aud, BANK);

      const issued = await latest('token.issued', (e) => e.data?.jti === claims.jti);
      assert.deepEqual(issued.data?.authorization_details, [tx.id]);
      const trail = await latest('transaction.token_issued', (e) => e.data?.transaction_id === tx.id);
      assert.equal(trail.clientId, 'sample-agent');
      assert.equal(trail.data?.jti, claims.jti);
      assert.equal(trail.data?.grant_type, 'urn:ietf:params:oauth:grant-type:token-exchange');

      // Introspection shows it (the agent introspects its own token).
      const introspected = await postForm(`${as.issuer}/introspect`, { token: res.json.access_token as string }, { authorization: agentAuth });
      assert.equal(introspected.json.active, true);
      assert.deepEqual(introspected.json.authorization_details, expected);

      // The transaction is still approved: the call spends it (the gateway's /use), with the RAR token.
      const spent = await use(as, tx.id, res.json.access_token as string, HASH);
      assert.equal(spent.status, 200, spent.text);
      assert.equal(spent.json.status, 'used');
    });

    it('an exchange without authorization_details, from a token that had them, carries none', async () => {
      const tx = await transaction(await bankToken());
      const rar = await rarExchange(details(tx.id));
      assert.equal(rar.status, 200, rar.text);
      const again = await exchange(as, { subject_token: demoAtAgent.accessToken, resource: BANK }, { authorization: agentAuth });
      assert.equal(again.status, 200, again.text);
      assert.equal(decodeJwt(again.json.access_token as string).authorization_details, undefined);
      assert.equal(again.json.authorization_details, undefined);
    });

    const refusals: [string, () => Promise<string>, RegExp, RegExp][] = [
      ['pending', async () => (await transaction(await bankToken(), 'pending')).id, /^transaction_pending: /, /transaction_pending: the transaction is pending/],
      ['denied', async () => (await transaction(await bankToken(), 'deny')).id, /^transaction_denied: /, /transaction_denied: the transaction is denied/],
      [
        'used',
        async () => {
          const token = await bankToken();
          const tx = await transaction(token);
          assert.equal((await use(as, tx.id, token, HASH)).status, 200);
          return tx.id;
        },
        /^transaction_used: /,
        /transaction_used: the transaction is used/,
      ],
      ["another user's", async () => (await transaction(await bankToken(bobAtAgent.accessToken), 'approve', bobAtAgent.browser)).id, /^no such transaction for this user$/, /is of sub=.*, token sub=/],
      ['unknown', async () => 'AAAAAAAAAAAAAAAAAAAAAA', /^no such transaction for this user$/, /transaction AAAAAAAAAAAAAAAAAAAAAA is unknown/],
      [
        "another agent's (client and chain)",
        async () => (await transaction(await bankToken(otherAtAgent.accessToken, otherAuth))).id,
        /^transaction_mismatch: /,
        /transaction_mismatch: token client_id=sample-agent, transaction client_id=other-agent/,
      ],
    ];
    for (const [name, make, description, reason] of refusals) {
      it(`refuses a transaction that is ${name}: invalid_authorization_details, audited with the reason`, async () => {
        const id = await make();
        const res = await rarExchange(details(id));
        const event = await refusedWith(res, description, 'token.exchange_refused', reason);
        assert.deepEqual((event.data as Record<string, unknown>).authorization_details, [id]);
        assert.equal((event.data as Record<string, unknown>).decision, 'refused');
      });
    }

    it('refuses an expired transaction', async () => {
      // The server counts whole seconds: a lifetime of 1 may leave a few ms to approve it in (a
      // flake under load, the approval page already "Expired"); 4 leaves at least 3 s.
      const tx = await transaction(await bankToken(), 'approve', demoAtAgent.browser, { lifetime_seconds: 4 });
      while (now() < tx.expiresAt) await new Promise((resolve) => setTimeout(resolve, 100));
      await refusedWith(await rarExchange(details(tx.id)), /^transaction_expired: /, 'token.exchange_refused', /transaction_expired: the transaction is expired/);
    });

    it('the chain rule: a transaction held for the agent’s own sign-in token (no act) is not granted through an exchange, which adds the agent to the chain', async () => {
      // A bank whose tokens name their client in may_act, so that the agent may exchange its own sign-in token.
      const server = await startTransactionServer({
        resources: [
          { id: AGENT, name: 'Agent sign-in', scopes: [{ name: 'banking:transfer' }], may_act: 'requesting_client' },
          { id: BANK, name: 'Example Bank', scopes: [{ name: 'banking:transfer' }], may_act: 'requesting_client', exchange: { allowed_actors: ['sample-agent'], max_depth: 2 } },
        ],
      });
      try {
        // demo signed in at the bank directly through sample-agent: the gateway saw client sample-agent, no act.
        const direct = await signIn(server, { clientId: 'sample-agent', secret: SECRETS.agent, resource: BANK });
        const created = await create(server, direct.accessToken);
        assert.equal(created.status, 201, created.text);
        const id = created.json.id as string;
        await decide(direct.browser, id, 'approve');
        // Exchanging that same token would issue act: [sample-agent], a chain the user was not shown.
        const res = await exchange(server, { subject_token: direct.accessToken, resource: BANK, authorization_details: details(id) }, { authorization: agentAuth });
        assert.equal(res.status, 400, res.text);
        assert.equal(res.json.error, 'invalid_authorization_details');
        assert.match(res.json.error_description as string, /^transaction_mismatch: /);
        const event = (await auditEvents(server)).find((e) => e.type === 'token.exchange_refused');
        assert.equal(event?.error, 'invalid_authorization_details');
        assert.match(event!.reason!, /token act chain \[sample-agent\], transaction act chain \[\]/);
        // Without authorization_details the same exchange is fine: only the approval is refused.
        assert.equal((await exchange(server, { subject_token: direct.accessToken, resource: BANK }, { authorization: agentAuth })).status, 200);
      } finally {
        await server.close();
      }
    });

    it('refuses another resource than the transaction’s', async () => {
      const tx = await transaction(await bankToken());
      // The agent's own resource (the sign-in audience) instead of the bank: the same user, client and chain.
      const res = await exchange(as, { subject_token: demoAtAgent.accessToken, resource: AGENT, authorization_details: details(tx.id) }, { authorization: agentAuth });
      await refusedWith(res, /^transaction_mismatch: /, 'token.exchange_refused', new RegExp(`token resource ${AGENT.replace(/[.]/g, '\\.')}, transaction resource`));
    });

    const malformed: [string, string, RegExp][] = [
      ['an unknown type', JSON.stringify([{ type: 'payment_initiation', instructedAmount: { amount: '1' } }]), /type "payment_initiation" is not supported/],
      ['not JSON', '[{', /not JSON/],
      ['an object, not an array', JSON.stringify({ type: 'mcp_tool_call', transaction_id: 'x' }), /must be a JSON array/],
      ['an empty array', '[]', /is empty/],
      ['a field the type does not define', JSON.stringify([{ type: 'mcp_tool_call', transaction_id: 'x', tool: 'transfer' }]), /takes a transaction_id and nothing else/],
      ['no transaction_id', JSON.stringify([{ type: 'mcp_tool_call' }]), /takes a transaction_id/],
      ['the same transaction twice', details('abc', 'abc'), /twice/],
      ['too many entries', details(...Array.from({ length: 9 }, (_, i) => `t${i}`)), /more than 8 entries/],
      ['too long', JSON.stringify([{ type: 'mcp_tool_call', transaction_id: 'x'.repeat(5000) }]), /longer than 4096 characters/],
    ];
    for (const [name, value, description] of malformed) {
      it(`refuses ${name} with invalid_authorization_details (RFC 9396 §5)`, async () => {
        const res = await rarExchange(value);
        assert.equal(res.status, 400, res.text);
        assert.equal(res.json.error, 'invalid_authorization_details');
        assert.match(res.json.error_description as string, description);
        const event = await latest('token.exchange_refused');
        assert.equal(event.error, 'invalid_authorization_details');
      });
    }
  });

  describe('refresh', () => {
    /** demo signs in at the bank through sample-agent (code + PKCE) and keeps the refresh token. */
    const directSignIn = async () => {
      const { verifier, challenge } = pkcePair();
      const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'sample-agent', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: BANK, scope: 'banking:transfer', state: 's' })}`;
      const back = await demoAtAgent.browser.authorize(url);
      const res = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT }, { authorization: agentAuth });
      assert.equal(res.status, 200, res.text);
      assert.ok(res.json.refresh_token, 'the agent gets refresh tokens');
      return { accessToken: res.json.access_token as string, refreshToken: res.json.refresh_token as string };
    };
    const refresh = (refreshToken: string, extra: Record<string, string> = {}) => postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra }, { authorization: agentAuth });

    it('an approved transaction of the grant’s own token: the access token carries it, ends with it; the next refresh does not keep it', async () => {
      const signedIn = await directSignIn();
      const tx = await transaction(signedIn.accessToken, 'approve', demoAtAgent.browser, { lifetime_seconds: 90 });
      const res = await refresh(signedIn.refreshToken, { authorization_details: details(tx.id) });
      assert.equal(res.status, 200, res.text);
      const expected = [{ type: 'mcp_tool_call', transaction_id: tx.id, resource: BANK, tool: 'transfer', arguments_hash: HASH }];
      assert.deepEqual(res.json.authorization_details, expected);
      const claims = decodeJwt(res.json.access_token as string);
      assert.deepEqual(claims.authorization_details, expected);
      assert.equal(claims.exp, tx.expiresAt);
      assert.equal(claims.act, undefined);
      const issued = await latest('token.issued', (e) => e.data?.jti === claims.jti);
      assert.deepEqual(issued.data?.authorization_details, [tx.id]);
      assert.equal((await latest('transaction.token_issued', (e) => e.data?.transaction_id === tx.id)).data?.grant_type, 'refresh_token');

      // Never widened: the rotated refresh token gives a plain, full-length token.
      const next = await refresh(res.json.refresh_token as string);
      assert.equal(next.status, 200, next.text);
      assert.equal(next.json.authorization_details, undefined);
      const plain = decodeJwt(next.json.access_token as string);
      assert.equal(plain.authorization_details, undefined);
      assert.ok((plain.exp as number) > tx.expiresAt, 'the normal lifetime again');

      // The approval spent by the call, it cannot be put in a token again.
      assert.equal((await use(as, tx.id, res.json.access_token as string, HASH)).status, 200);
      await refusedWith(await refresh(next.json.refresh_token as string, { authorization_details: details(tx.id) }), /^transaction_used: /, 'token.refused', /transaction_used/);
    });

    it('a refused authorization_details does not spend the refresh token', async () => {
      const signedIn = await directSignIn();
      const pending = await transaction(signedIn.accessToken, 'pending');
      await refusedWith(await refresh(signedIn.refreshToken, { authorization_details: details(pending.id) }), /^transaction_pending: /, 'token.refused', /transaction_pending: the transaction is pending/);
      await refusedWith(await refresh(signedIn.refreshToken, { authorization_details: JSON.stringify([{ type: 'openid_credential' }]) }), /not supported/, 'token.refused', /unknown type/);
      const ok = await refresh(signedIn.refreshToken);
      assert.equal(ok.status, 200, ok.text);
    });

    it('a transaction held for an exchanged token (act: [sample-agent]) is not granted on the grant’s own refresh (no act)', async () => {
      const signedIn = await directSignIn();
      const tx = await transaction(await bankToken());
      await refusedWith(await refresh(signedIn.refreshToken, { authorization_details: details(tx.id) }), /^transaction_mismatch: /, 'token.refused', /token act chain \[\], transaction act chain \[sample-agent\]/);
    });
  });

  it('other grants refuse authorization_details rather than drop it', async () => {
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: BANK, authorization_details: JSON.stringify([{ type: 'mcp_tool_call', transaction_id: 'x' }]) }, { authorization: basic('gateway', SECRETS.gateway) });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_authorization_details');
    const event = await latest('token.refused');
    assert.equal(event.error, 'invalid_authorization_details');
    assert.match(event.reason!, /not with client_credentials/);
  });

  it('a claim mapping cannot set authorization_details', async () => {
    // The start fails on the configuration; without Redis, as a start that fails does not close the Redis client it opened.
    const redisUrl = process.env.REDIS_URL;
    delete process.env.REDIS_URL;
    try {
      await assert.rejects(
        startTransactionServer({ resources: [{ id: BANK, name: 'Bank', scopes: [{ name: 'banking:transfer' }], claims: { authorization_details: '[{"type": "mcp_tool_call"}]' } }] }),
        /claim authorization_details cannot be mapped/,
      );
    } finally {
      if (redisUrl !== undefined) process.env.REDIS_URL = redisUrl;
    }
  });
});
