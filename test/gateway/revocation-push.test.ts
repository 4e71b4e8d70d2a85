import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { RevocationFeeds } from '../../src/gateway/node/revocation-feeds.ts';
import type { RevocationList } from '../../src/gateway/revocation-list.ts';
import { revocationChannel, type RevocationChannel } from '../../src/store/revocation-channel.ts';
import { freePort } from '../helpers/auth-server.ts';
import { startPrivateRedis, until, type PrivateRedis } from '../helpers/private-services.ts';

/**
 * The push half of the revocation feed against a private Redis this test starts, kills and
 * restarts: a pushed revocation applies at once, and one made while Redis was down (its message
 * lost) is caught up by the poll made on reconnecting — long before the next scheduled poll.
 */
const ISSUER = 'https://as.push.test';
const CHANNEL = 'mandate-test:push:revocations';

describe('revocation feed over Redis pub/sub: applied at once, caught up after a reconnect', () => {
  /** A private Redis (never the shared one: this test stops it). */
  let redis: PrivateRedis;
  let listServer: Server;
  let feeds: RevocationFeeds;
  let publisher: RevocationChannel;
  let list: RevocationList;
  const revoked: { jti: string; exp: number }[] = [];
  let reads = 0;

  before(async () => {
    redis = await startPrivateRedis();
    listServer = createServer((_req, res) => {
      reads++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ next_since: 0, tokens: revoked, grants: [], clients: [] }));
    });
    const listPort = await freePort();
    await new Promise<void>((resolve) => listServer.listen(listPort, '127.0.0.1', resolve));
    feeds = new RevocationFeeds({ redisUrl: redis.url });
    // A scheduled poll far away: only a push or the reconnect catch-up can bring news in time.
    list = feeds.acquire({ endpoint: `http://127.0.0.1:${listPort}/revocations`, issuer: ISSUER, clientId: 'gw', clientSecret: 's', pollMs: 600_000, channel: CHANNEL }).list;
    publisher = revocationChannel({ url: redis.url, channel: CHANNEL });
  });
  after(async () => {
    await feeds.close();
    await publisher.close();
    listServer.close();
    await redis?.close();
  });

  it('a pushed revocation applies at once', async () => {
    await until(async () => list.loaded, 10_000, 'the first list load', 20);
    const exp = Math.floor(Date.now() / 1000) + 600;
    // The subscription may still be being set up: publish until it is heard.
    await until(async () => {
      void publisher.publish({ iss: ISSUER, type: 'token', jti: 'pushed', exp, revoked_at: exp - 600 }).catch(() => undefined);
      return list.reason({ jti: 'pushed' }) === 'the token was revoked';
    }, 10_000, 'the pushed revocation', 20);
  });

  it('a revocation made while Redis was down is caught up on reconnect, not at the next poll', async () => {
    await redis.kill();
    revoked.push({ jti: 'missed-while-down', exp: Math.floor(Date.now() / 1000) + 600 });
    const readsBefore = reads;
    assert.equal(list.reason({ jti: 'missed-while-down' }), undefined, 'its message was lost');
    await redis.start();
    await until(async () => list.reason({ jti: 'missed-while-down' }) === 'the token was revoked', 15_000, 'the catch-up after the reconnect', 20);
    assert.ok(reads > readsBefore, 'the list was read again on reconnecting');
  });
});
