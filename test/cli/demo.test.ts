import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { skipUnless } from '../helpers/services.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, 'localhost', () => server.close(() => resolve(true)));
  });
}

function run(args: string[], cwd: string) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, LOG_LEVEL: 'warn' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, out: () => out, err: () => err };
}

const demoPort = skipUnless(await portFree(9000), 'demo test: port 9000 is in use');

describe('the mandate command', () => {
  it('`mandate demo` starts the authorization server on :9000, prints a guide, and stops cleanly on Ctrl-C', demoPort, async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-demo-'));
    try {
      const demo = run(['demo'], cwd);
      for (let i = 0; i < 100 && !demo.out().includes('Press Ctrl-C'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(demo.out(), /http:\/\/localhost:9000/);
      assert.match(demo.out(), /demo \/ demo/);
      const metadata = (await (await fetch('http://localhost:9000/.well-known/oauth-authorization-server')).json()) as Record<string, unknown>;
      assert.equal(metadata.issuer, 'http://localhost:9000');
      assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
      assert.equal(metadata.authorization_response_iss_parameter_supported, true);
      assert.equal(metadata.client_id_metadata_document_supported, true);
      // The demo allows MCP Inspector's origin through CORS.
      const preflight = await fetch('http://localhost:9000/token', {
        method: 'OPTIONS',
        headers: { origin: 'http://localhost:6277', 'access-control-request-method': 'POST' },
      });
      assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://localhost:6277');
      const other = await fetch('http://localhost:9000/token', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
      assert.equal(other.headers.get('access-control-allow-origin'), null);
      demo.child.kill('SIGINT');
      assert.equal(await demo.exited, 0);
      assert.match(demo.out(), /stopping/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('rejects a configuration with an unknown key, naming it, with exit code 2', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-cli-'));
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(cwd, 'bad.yaml'), 'issuer: http://localhost:9100\ntokenz: {}\n');
      const cli = run(['serve', 'auth', '--config', 'bad.yaml'], cwd);
      assert.equal(await cli.exited, 2);
      assert.match(cli.err(), /tokenz/);
      assert.doesNotMatch(cli.err(), /at .*\.ts:\d+/, 'no stack trace');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('`mandate keys rotate` adds a key to the data dir', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-keys-'));
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(cwd, 'auth.yaml'), 'issuer: http://localhost:9100\ndata_dir: data\n');
      const rotate = run(['keys', 'rotate', '--config', 'auth.yaml'], cwd);
      assert.equal(await rotate.exited, 0, rotate.err());
      assert.match(rotate.out(), /new key \S+: published now, signs from/);
      const list = run(['keys', 'list', '--config', 'auth.yaml'], cwd);
      assert.equal(await list.exited, 0);
      assert.equal(list.out().trim().split('\n').length, 2);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
