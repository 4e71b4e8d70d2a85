import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, decodeJwt, postForm, registerClient } from '../helpers/auth-server.ts';
import { exchange, userToken } from '../helpers/delegation-server.ts';
import { skipUnless } from '../helpers/services.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

/** Free on both loopback families: `localhost` may reach either, and a stale server on one would answer. */
async function portFree(port: number): Promise<boolean> {
  const free = (host: string) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRNOTAVAIL' || error.code === 'EAFNOSUPPORT'));
      server.listen(port, host, () => server.close(() => resolve(true)));
    });
  return (await free('127.0.0.1')) && (await free('::1'));
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

/** The seeds' flows A and B against the demo configuration, as the README walks through them. */
async function demoDelegation(cwd: string) {
  const issuer = 'http://localhost:9000';
  const secret = (name: string) => readFileSync(join(cwd, '.mandate', 'secrets', `${name}.secret`), 'utf8').trim();
  const client = await registerClient(issuer, { client_name: 'demo test', software_id: crypto.randomUUID(), redirect_uris: ['http://127.0.0.1:3999/callback'], token_endpoint_auth_method: 'none' });
  const user = await userToken({ issuer } as never, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:3999/callback', resource: 'http://localhost:8787/mcp', scope: 'todo_api:read todo_api:write' });
  assert.deepEqual(decodeJwt(user.token.access_token).may_act, { sub: 'todo-mcp' });
  const api = await exchange({ issuer } as never, { subject_token: user.token.access_token, resource: 'http://localhost:8001', scope: 'todo_api:read' }, { authorization: basic('todo-mcp', secret('todo-mcp')) });
  assert.equal(api.status, 200, api.text);
  assert.deepEqual(decodeJwt(api.json.access_token as string).act, { sub: 'todo-mcp' });

  const agent = { authorization: basic('sample-agent', secret('sample-agent')) };
  const actor = await postForm(`${issuer}/token`, { grant_type: 'client_credentials', resource: 'http://localhost:3000' }, agent);
  assert.equal(actor.status, 200, actor.text);
  const browser = new FormBrowser(issuer);
  const subject = await userToken({ issuer } as never, { clientId: 'sample-agent', redirectUri: 'http://localhost:3000/callback', resource: 'http://localhost:3000', scope: 'banking:read', clientAuth: agent, browser });
  assert.ok(browser.pages.some((p) => p.html.includes('Digital assistant consent')), 'the agreement page');
  const mandate = await exchange(
    { issuer } as never,
    { subject_token: subject.token.access_token, actor_token: actor.json.access_token as string, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: 'http://localhost:8080/mcp', scope: 'banking:read' },
    agent,
  );
  assert.equal(mandate.status, 200, mandate.text);
  const claims = decodeJwt(mandate.json.access_token as string);
  assert.deepEqual(claims.act, { sub: 'sample-agent' });
  assert.equal(claims.acr, 'Agent-Consent-Login');
}

describe('the mandate command', () => {
  it('`mandate demo` starts the authorization server on :9000, prints a guide, and stops cleanly on Ctrl-C', demoPort, async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-demo-'));
    const demo = run(['demo'], cwd);
    try {
      for (let i = 0; i < 100 && !demo.out().includes('Press Ctrl-C'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(demo.out(), /Press Ctrl-C/, `the demo did not start: ${demo.err()}`);
      assert.equal(demo.child.exitCode, null, 'the demo is still running');
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
      await demoDelegation(cwd);
      demo.child.kill('SIGINT');
      assert.equal(await demo.exited, 0);
      assert.match(demo.out(), /stopping/);
    } finally {
      // Never leave the demo running: a failed assertion must not hold the port or hang the run.
      if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
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

  it('`mandate hash-password` hashes a piped password with scrypt', async () => {
    const cli = spawn(process.execPath, [BIN, 'hash-password'], { env: process.env });
    let out = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stdin.end('correct horse\n');
    assert.equal(await new Promise((r) => cli.on('exit', r)), 0);
    const { verifyPassword } = await import('../../src/auth-server/passwords.ts');
    assert.equal(await verifyPassword('correct horse', out.trim()), true);
    assert.equal(await verifyPassword('wrong', out.trim()), false);
  });

  it('`mandate keys rotate` adds a key to the data dir', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-keys-'));
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(cwd, 'auth.yaml'), 'issuer: http://localhost:9100\ndata_dir: data\n');
      const empty = run(['keys', 'list', '--config', 'auth.yaml'], cwd);
      assert.equal(await empty.exited, 1, 'listing creates nothing');
      assert.match(empty.err(), /no key file/);
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
