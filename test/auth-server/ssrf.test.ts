import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { freePort, pkcePair, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { isPublicAddress } from '../../src/auth-server/network-guard.ts';

const REDIRECT = 'http://127.0.0.1:4000/callback';

/** Item 15: the SSRF guard's address ranges, and metadata-document fetches that cannot be used as a reflector. */
describe('SSRF guard', () => {
  it('refuses every IPv6 range that reaches a private or unchecked IPv4 address, and the reserved ones', () => {
    for (const address of [
      '::7f00:1', // IPv4-compatible (::/96) 127.0.0.1
      '::a00:1', // IPv4-compatible 10.0.0.1
      '::ffff:7f00:1', // IPv4-mapped 127.0.0.1, hex spelling
      '::ffff:169.254.169.254',
      '64:ff9b::a9fe:a9fe', // NAT64 of 169.254.169.254
      '64:ff9b::127.0.0.1',
      '64:ff9b:1::808:808', // local-use NAT64
      '2002:7f00:1::1', // 6to4 of 127.0.0.1
      '2002:808:808::1', // 6to4 of a public address: still a tunnel the guard cannot follow
      '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo
      '2001:db8::1',
      'fec0::1', // site-local
      '100::1',
      'ff02::1',
      'fe80::1',
      'fd12:3456::1',
      '192.0.2.1',
      '198.51.100.7',
      '203.0.113.9',
    ]) {
      assert.equal(isPublicAddress(address), false, address);
    }
  });

  it('allows public addresses, including public IPv4 through the well-known NAT64 prefix', () => {
    for (const address of ['8.8.8.8', '2606:4700::1111', '2001:4860:4860::8888', '64:ff9b::808:808', '::ffff:8.8.8.8']) {
      assert.equal(isPublicAddress(address), true, address);
    }
  });

  describe('metadata documents on tunnelled addresses (as shipped: no loopback allowance)', () => {
    let as: TestAuthServer;
    before(async () => {
      as = await startTestAuthServer();
    });
    after(async () => as.close());

    for (const host of ['[2002:7f00:1::1]', '[::7f00:1]', '[64:ff9b:1::a00:1]', '[fec0::1]', '[2001::1]', '[64:ff9b::7f00:1]']) {
      it(`refuses https://${host}/client.json before connecting`, async () => {
        const clientId = `https://${host}/client.json`;
        const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256' })}`;
        const res = await fetch(url, { headers: { accept: 'application/json' } });
        assert.equal(res.status, 400);
        assert.equal(((await res.json()) as { error: string }).error, 'invalid_client');
        await as.ctx.audit.flush();
        const [event] = await as.store.audit.list({ clientId });
        assert.equal(event?.error, 'invalid_client');
        assert.match(event?.reason ?? '', /resolves to the non-public address/);
      });
    }
  });

  describe('failed document fetches are remembered and each host is fetched at a bounded rate', () => {
    let as: TestAuthServer;
    let docs: Server;
    let base: string;
    const hits = new Map<string, number>();
    before(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      docs = createServer((req, res) => {
        hits.set(req.url ?? '/', (hits.get(req.url ?? '/') ?? 0) + 1);
        res.writeHead(404);
        res.end();
      });
      await new Promise<void>((r) => docs.listen(port, '127.0.0.1', r));
      as = await startTestAuthServer({ client_id_metadata_documents: { allow_loopback: true, fetches_per_host_per_minute: 3 } });
    });
    after(async () => {
      await as.close();
      docs.closeAllConnections();
      await new Promise((r) => docs.close(r));
    });

    const authorize = async (clientId: string) => {
      const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256' })}`;
      const res = await fetch(url, { headers: { accept: 'application/json' } });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_client');
      await as.ctx.audit.flush();
      const events = await as.store.audit.list({ clientId });
      assert.equal(events[0]?.error, 'invalid_client');
      return events[0]?.reason ?? '';
    };

    it('asks once for a missing document, however often /authorize names it', async () => {
      const clientId = `${base}/missing.json`;
      assert.match(await authorize(clientId), /answered HTTP 404/);
      assert.match(await authorize(clientId), /answered HTTP 404 \(failed fetch remembered; not fetched again\)/);
      // Concurrent requests do not slip past the remembered failure either.
      await Promise.all([1, 2, 3].map(() => authorize(clientId)));
      assert.equal(hits.get('/missing.json'), 1);
    });

    it('fetches from one host at most the configured number of times a minute', async () => {
      assert.match(await authorize(`${base}/a.json`), /answered HTTP 404/);
      assert.match(await authorize(`${base}/b.json`), /answered HTTP 404/);
      // Three fetches per minute: /missing.json, /a.json and /b.json used them.
      assert.match(await authorize(`${base}/c.json`), /too many document fetches from 127\.0\.0\.1:\d+; not fetched/);
      assert.equal(hits.get('/c.json'), undefined);
    });
  });
});
