import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { needsRedis, redisUrl } from '../helpers/services.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

describe('`mandate serve auth` on a port that is taken', needsRedis(), () => {
  it('says so and exits 1: nothing it opened (Redis, pub/sub, database, timers) holds the process', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), 'mandate-taken-'));
    const file = join(dir, 'auth.yaml');
    writeFileSync(file, `issuer: http://127.0.0.1:${port}\nlisten: { host: 127.0.0.1, port: ${port} }\ndata_dir: ${join(dir, 'data')}\nstorage: { driver: sqlite }\n`);
    try {
      const child = spawn(process.execPath, [BIN, 'serve', 'auth', '--config', file], { env: { ...process.env, REDIS_URL: redisUrl, LOG_LEVEL: 'silent' } });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      // Bounded: a process held open by a leftover connection would never exit.
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
      clearTimeout(killer);
      assert.equal(signal, null, `the process had to be killed: something held it open\n${stderr}`);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
    } finally {
      blocker.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
