import { DEVICE_CODE_GRANT } from '../../core/client-metadata.ts';
import { OAuthError } from '../../core/errors.ts';
import { deviceKey, type DeviceAuthorization } from '../device.ts';
import { hashSecret } from '../hash.ts';
import { issueGrantTokens } from '../tokens.ts';
import type { GrantHandler } from './types.ts';

/** RFC 8628 §3.4–3.5: the device polls with its device code until the person has decided. */
export const deviceCodeGrant: GrantHandler = {
  grantType: DEVICE_CODE_GRANT,
  parameters: ['device_code'],
  async handler(ctx, { client, params, dpop }) {
    const key = deviceKey(hashSecret(params.require('device_code')));
    // Every change is a compare-and-set against the record read: a poll never writes a stale
    // `pending` over an approval made meanwhile, and an approved code is taken by one poll only.
    let record: DeviceAuthorization | undefined;
    let lostRace = false;
    for (let attempt = 0; ; attempt++) {
      record = await ctx.cache.get<DeviceAuthorization>(key);
      const now = ctx.now();
      if (!record || record.expiresAt <= now) {
        throw new OAuthError('expired_token', 'the device code has expired; start again', lostRace ? { reason: 'device code redeemed concurrently' } : {});
      }
      if (record.clientId !== client.clientId) throw new OAuthError('invalid_grant', 'the device code was issued to another client', { reason: `device code of ${record.clientId}` });
      const ttl = Math.max(1, record.expiresAt - now);
      if (record.status === 'pending') {
        const polledAt = Date.now();
        const tooSoon = record.lastPollMs !== undefined && polledAt - record.lastPollMs < record.interval * 1000;
        const next = { ...record, lastPollMs: polledAt, interval: tooSoon ? record.interval + 5 : record.interval };
        if (!(await ctx.cache.swap(key, record, next, ttl))) {
          lostRace = true;
          if (attempt < 3) continue;
          throw new OAuthError('slow_down', 'polling too fast: wait longer between requests', { reason: 'device record changed under concurrent polls' });
        }
        if (tooSoon) throw new OAuthError('slow_down', 'polling too fast: wait longer between requests');
        throw new OAuthError('authorization_pending', 'the user has not decided yet');
      }
      if (await ctx.cache.swap(key, record, undefined, ttl)) break;
      // Another poll took the decision first: the next read finds the code gone.
      lostRace = true;
    }
    if (record.status === 'denied') {
      // RFC 8628 §3.5: token endpoint errors are 400s.
      throw new OAuthError('access_denied', 'the user denied the request', { status: 400 });
    }
    const grant = record.grantId ? await ctx.store.grants.findGrant(record.grantId) : undefined;
    if (!grant || grant.revokedAt) throw new OAuthError('invalid_grant', 'the grant has been revoked');
    const resource = ctx.resource(record.resource);
    if (!resource) throw new OAuthError('invalid_target', 'the resource no longer exists');
    const scope = record.scopes.join(' ');
    return issueGrantTokens(ctx, { client, grant, resource, scopes: record.scopes, refreshScope: scope, grantType: DEVICE_CODE_GRANT, ...(dpop ? { jkt: dpop.jkt } : {}) });
  },
};
