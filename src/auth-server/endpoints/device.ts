import type { Hono } from 'hono';
import { DEVICE_CODE_GRANT } from '../../core/client-metadata.ts';
import { randomToken } from '../../core/encoding.ts';
import { OAuthError } from '../../core/errors.ts';
import { authenticateClient } from '../client-auth/index.ts';
import { endpointUrls, resolveResourceAndScope, type AppEnv, type ServerContext } from '../context.ts';
import { deviceKey, newUserCode, normaliseUserCode, userCodeKey, type DeviceAuthorization } from '../device.ts';
import { hashSecret } from '../hash.ts';
import { saveInteraction, type Interaction } from '../interaction.ts';
import { formParams } from '../params.ts';
import { deviceCodePage, deviceDonePage } from '../pages/device.ts';
import { pageLook } from '../pages/layout.ts';

/**
 * The device authorization grant (RFC 8628), for agents on machines without a browser: the
 * device asks for a code pair; the person opens the verification page anywhere, types the user
 * code, signs in and consents (always asked: the request did not start in this browser, so the
 * person confirms what they connect); the device polls the token endpoint meanwhile.
 */
export function deviceEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const urls = endpointUrls(ctx.issuer);
  const look = pageLook(ctx.config.branding);
  const text = look.text.device;

  app.post('/device_authorization', async (c) => {
    const params = await formParams(c);
    const client = await authenticateClient(ctx, c, params, urls.deviceAuthorization);
    if (!client.metadata.grant_types.includes(DEVICE_CODE_GRANT)) {
      throw new OAuthError('unauthorized_client', 'the client may not use the device authorization grant');
    }
    const { resource, scopes } = resolveResourceAndScope(ctx, client, { resource: params.all('resource'), scope: params.get('scope') });
    const deviceCode = randomToken(32);
    const userCode = newUserCode();
    const ttl = ctx.config.tokens.device_code_ttl;
    const interval = ctx.config.tokens.device_poll_interval;
    const record: DeviceAuthorization = {
      clientId: client.clientId,
      scopes,
      resource: resource.id,
      acr: ctx.authenticationPolicy(client.metadata.authentication_policy as string | undefined)?.name,
      userCode,
      status: 'pending',
      interval,
      expiresAt: ctx.now() + ttl,
    };
    const codeHash = hashSecret(deviceCode);
    await ctx.cache.set(deviceKey(codeHash), record, ttl);
    await ctx.cache.set(userCodeKey(userCode), codeHash, ttl);
    ctx.audit.record({ at: ctx.now(), type: 'device.requested', outcome: 'success', clientId: client.clientId, data: { resource: resource.id, scope: scopes.join(' ') } });
    // RFC 8628 §3.2
    return c.json(
      {
        device_code: deviceCode,
        user_code: userCode,
        verification_uri: urls.deviceVerification,
        verification_uri_complete: `${urls.deviceVerification}?user_code=${encodeURIComponent(userCode)}`,
        expires_in: ttl,
        interval,
      },
      200,
      { 'Cache-Control': 'no-store' },
    );
  });

  app.get('/device', (c) => deviceCodePage(c, look, { userCode: c.req.query('user_code') }));

  // RFC 8628 §5.1: user codes are short, so guessing must be slow — a few tries per 5 minutes per address.
  const codeAttempts = ctx.limiter('device-code', { points: ctx.config.limits.device_codes_per_address, perSeconds: 300 });

  app.post('/device', async (c) => {
    const form = (await c.req.parseBody()) as Record<string, string>;
    const peer = ctx.clientAddress(c);
    if (!(await codeAttempts.consume(peer)).allowed) {
      ctx.audit.record({ at: ctx.now(), type: 'device.code_refused', outcome: 'failure', error: 'slow_down', reason: `too many codes from ${peer}` });
      return deviceCodePage(c, look, { error: text.throttled });
    }
    const userCode = normaliseUserCode(String(form.user_code ?? ''));
    const codeHash = await ctx.cache.get<string>(userCodeKey(userCode));
    const record = codeHash ? await ctx.cache.get<DeviceAuthorization>(deviceKey(codeHash)) : undefined;
    if (!codeHash || !record || record.status !== 'pending') {
      ctx.audit.record({ at: ctx.now(), type: 'device.code_refused', outcome: 'failure', error: 'invalid_grant', reason: 'unknown or used user code' });
      return deviceCodePage(c, look, { userCode: String(form.user_code ?? ''), error: text.invalid });
    }
    const interaction: Interaction = {
      id: randomToken(16),
      clientId: record.clientId,
      redirectUri: `${ctx.issuer.replace(/\/$/, '')}/device/done`,
      scopes: record.scopes,
      resource: record.resource,
      codeChallenge: '',
      prompt: ['consent'],
      acr: record.acr,
      bind: randomToken(16),
      csrf: randomToken(16),
      deviceCodeHash: codeHash,
    };
    await saveInteraction(ctx, c, interaction);
    return c.redirect(`/interaction/${interaction.id}`, 303);
  });

  app.get('/device/done', (c) => deviceDonePage(c, look, c.req.query('denied') !== undefined));
}
