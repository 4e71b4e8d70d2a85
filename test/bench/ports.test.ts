import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../../bench/lib/ports.ts';

/** The low end of the kernel's ephemeral range (Linux: /proc; freePort reads the same). */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 32_768;
  }
}

const bind = (port: number) =>
  new Promise<() => Promise<void>>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(() => new Promise((done) => server.close(() => done()))));
  });

describe('free ports for servers started later', () => {
  it('are below the kernel ephemeral range, where no port-0 bind or outgoing connection takes them', async () => {
    const port = await freePort();
    assert.ok(port >= 10_000 && port < ephemeralLow(), `${port} is not in [10000, ${ephemeralLow()})`);
  });

  it('are never handed out twice, even asked for all at once', async () => {
    const ports = await Promise.all(Array.from({ length: 300 }, () => freePort()));
    assert.equal(new Set(ports).size, ports.length);
    assert.ok(!ports.includes(10080), 'never a port fetch refuses');
  });

  it('can be bound at once, and one still held by a server is not handed out again', async () => {
    const held = await freePort();
    const close = await bind(held);
    try {
      const ports = await Promise.all(Array.from({ length: 50 }, () => freePort()));
      assert.ok(!ports.includes(held));
      for (const port of ports) await (await bind(port))();
    } finally {
      await close();
    }
  });
});
