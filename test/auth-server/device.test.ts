import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { decodeJwt, postForm } from '../helpers/auth-server.ts';
import { R, auth, startDelegationServer } from '../helpers/delegation-server.ts';

const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code';

describe('device authorization grant (RFC 8628)', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  before(async () => {
    as = await startDelegationServer({ tokens: { device_poll_interval: 1 } });
  });
  after(async () => as.close());

  const start = async (scope = 'banking:read', headers = auth.agent) => {
    const res = await postForm(`${as.issuer}/device_authorization`, { scope, resource: R.agent }, headers);
    assert.equal(res.status, 200, res.text);
    return res.json as { device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string; expires_in: number; interval: number };
  };
  const poll = (deviceCode: string, headers = auth.agent) => postForm(`${as.issuer}/token`, { grant_type: DEVICE, device_code: deviceCode }, headers);

  it('advertises the endpoint and the grant', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.device_authorization_endpoint, `${as.issuer}/device_authorization`);
    assert.ok((metadata.grant_types_supported as string[]).includes(DEVICE));
  });

  it('pending, slow down, then approved in the browser: tokens for the person, with may_act for the agent', async () => {
    const device = await start();
    assert.match(device.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.equal(device.verification_uri, `${as.issuer}/device`);
    assert.equal(device.interval, 1);
    assert.equal((await poll(device.device_code)).json.error, 'authorization_pending');
    assert.equal((await poll(device.device_code)).json.error, 'slow_down', 'a second poll within the interval');
    const browser = new FormBrowser(as.issuer);
    const done = await browser.approveDevice(device.user_code.toLowerCase().replace('-', ' '));
    assert.match(done.url, /\/device\/done$/);
    assert.match(done.html, /Device connected/);
    assert.ok(browser.pages.some((page) => page.html.includes('value="allow"')), 'consent is always asked for a device');
    const token = await poll(device.device_code);
    assert.equal(token.status, 200, token.text);
    const claims = decodeJwt(token.json.access_token as string);
    assert.equal(claims.aud, R.agent);
    assert.deepEqual(claims.may_act, { sub: 'sample-agent' });
    assert.equal(claims.acr, 'Agent-Consent-Login');
    assert.ok(token.json.refresh_token, 'a refresh token');
    assert.equal((await poll(device.device_code)).json.error, 'expired_token', 'redeemable once');
  });

  it('denied in the browser: access_denied for the device', async () => {
    const device = await start();
    const done = await new FormBrowser(as.issuer).approveDevice(device.user_code, { decision: 'deny' });
    assert.match(done.html, /Device not connected/);
    const res = await poll(device.device_code);
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'access_denied');
  });

  it('refusals: an unknown user code, a client without the grant (asking or polling), an unknown device code', async () => {
    const page = await new FormBrowser(as.issuer).open('/device', { method: 'POST', form: { user_code: 'BCDF-GHJK' } });
    assert.equal(page.status, 400);
    assert.match(page.html, /not valid/);
    const device = await start();
    assert.equal((await poll(device.device_code, auth.mcp)).json.error, 'unauthorized_client', 'a client without the grant cannot poll');
    assert.equal((await poll('not-a-device-code')).json.error, 'expired_token');
    const refused = await postForm(`${as.issuer}/device_authorization`, { scope: 'banking:read', resource: R.agent }, auth.mcp);
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error, 'unauthorized_client');
  });

  it('user codes cannot be guessed quickly: after 10 tries from one address, even a right code is refused for a while', async () => {
    const device = await start();
    const browser = new FormBrowser(as.issuer);
    for (let i = 0; i < 9; i++) await browser.open('/device', { method: 'POST', form: { user_code: 'BCDF-GHJK' } });
    const blocked = await browser.open('/device', { method: 'POST', form: { user_code: device.user_code } });
    assert.equal(blocked.status, 400);
    assert.match(blocked.html, /Too many codes tried/);
  });
});
