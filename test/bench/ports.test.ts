import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../../bench/lib/ports.ts';

const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

describe('free ports for servers started later', () => {
  it('are below the kernel ephemeral range, where no port-0 bind or outgoing connection takes them', async () => {
    const port = await freePort();
    assert.ok(port >= 10_000 && port < ephemeralLow, `${port} is not in [10000, ${ephemeralLow})`);
  });

  it('are never handed out twice, even asked for all at once', async () => {
    const ports = await Promise.all(Array.from({ length: 300 }, () => freePort()));
    assert.equal(new Set(ports).size, ports.length);
  });

  it('are not one a server listens on', async () => {
    // A listener on every port of a small window: freePort must step over each one it draws there.
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const ports = await Promise.all(Array.from({ length: 50 }, () => freePort()));
      assert.ok(!ports.includes(port));
      for (const p of ports) {
        const probe = createServer();
        await new Promise<void>((resolve, reject) => {
          probe.once('error', reject);
          probe.listen(p, '127.0.0.1', resolve);
        });
        await new Promise((resolve) => probe.close(resolve));
      }
    } finally {
      server.close();
    }
  });
});
