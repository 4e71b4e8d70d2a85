/**
 * Free loopback ports for servers a test or a benchmark starts later (a child process, a Worker in
 * workerd): the port must be known before the server binds it, because its URL goes into the
 * server's own config.
 *
 * A port the kernel picks (listen on port 0, then close) comes from its ephemeral range, the range
 * it also draws from for every other port-0 bind and for every outgoing connection's source port:
 * in a test run with other files running beside it, one of those can take the port in the seconds
 * before the server binds it (CI saw workerd fail with "Address already in use"). So the port is
 * taken below that range, where the kernel never hands one out by itself, at random, and reserved
 * across processes by creating a file exclusively (one directory per ten minutes and per user; a
 * port reserved in the period before or after is not handed out either), then checked free by
 * binding it. Where that cannot be done (no /proc, a temporary directory that cannot be written),
 * the kernel picks, as before.
 */
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

const RESERVATIONS = join(tmpdir(), `mandate-ports-${userInfo().uid}`);
const PERIOD_MS = 10 * 60_000;
const LOWEST = 10_000;
const ATTEMPTS = 200;
/** Ports in the range that browsers and `fetch` refuse to connect to (the Fetch standard's "bad ports"). */
const BAD_PORTS = new Set([10080]);

export async function freePort(): Promise<number> {
  const below = ephemeralLow();
  if (below - LOWEST < 1_000) return kernelPort();
  const period = Math.floor(Date.now() / PERIOD_MS);
  const dir = (p: number) => join(RESERVATIONS, String(p));
  try {
    mkdirSync(dir(period), { recursive: true, mode: 0o700 });
  } catch {
    return kernelPort();
  }
  dropOldPeriods(period);
  for (let i = 0; i < ATTEMPTS; i++) {
    const port = LOWEST + randomInt(below - LOWEST);
    if (BAD_PORTS.has(port) || !reserve(dir(period), port)) continue;
    // Reserved first, then the neighbours looked at: of two processes on either side of a period's
    // end that drew the same port, the one that looks second sees the other's reservation.
    if (reservedIn(dir(period - 1), port) || reservedIn(dir(period + 1), port)) continue;
    if (await canListen(port)) return port;
  }
  return kernelPort();
}

/** The low end of the kernel's ephemeral port range (Linux; 32768 where it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/** Whether this process now holds `port` in `dir` (false when another holds it, or the file cannot be made). */
function reserve(dir: string, port: number): boolean {
  try {
    writeFileSync(join(dir, String(port)), String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    return false;
  }
}

const reservedIn = (dir: string, port: number): boolean => existsSync(join(dir, String(port)));

/** Periods before the previous one reserve nothing any more (best effort: a failure leaves them). */
function dropOldPeriods(period: number): void {
  try {
    for (const name of readdirSync(RESERVATIONS)) {
      if (Number(name) < period - 1) rmSync(join(RESERVATIONS, name), { recursive: true, force: true });
    }
  } catch {
    // Another process removed it first, or it is not ours to remove.
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
