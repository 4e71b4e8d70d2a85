import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * RFC 9126 §2.1 (security review of issue 15): a confidential client authenticating with HTTP
 * Basic need not repeat client_id in the body; the pushed request is its own all the same, and the
 * request_uri works at /authorize.
 */
const REDIRECT = 'http://127.0.0.1:4000/callback';
const SECRET = 'par-basic-secret-0123456789-0123456789-0123456789';

describe('PAR with HTTP Basic and no client_id in the body', () => {
  let as: TestAuthServer;
  before(async () => {
    process.env.PAR_BASIC_SECRET = SECRET;
    as = await startTestAuthServer({ clients: [{ client_id: 'conf', client_secret_env: 'PAR_BASIC_SECRET', redirect_uris: [REDIRECT], grant_types: ['authorization_code'] }] });
  });
  after(async () => as?.close());

  it('pushes, signs in with the request_uri alone, and the code redeems', async () => {
    const { verifier, challenge } = pkcePair();
    const pushed = await postForm(
      `${as.issuer}/par`,
      { response_type: 'code', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', state: 's1', resource: as.resource, scope: 'mcp:read' },
      { authorization: basic('conf', SECRET) },
    );
    assert.equal(pushed.status, 201, pushed.text);
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?client_id=conf&request_uri=${encodeURIComponent(pushed.json.request_uri as string)}`);
    assert.equal(back.origin + back.pathname, REDIRECT);
    assert.equal(back.searchParams.get('state'), 's1');
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: verifier }, { authorization: basic('conf', SECRET) });
    assert.equal(token.status, 200, token.text);
  });
});
