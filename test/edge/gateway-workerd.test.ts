/**
 * The gateway's Worker build (src/gateway/workers/, issue 16) in workerd: the bundle that
 * `npm run edge:build` makes, started by Miniflare (installed under .cache/edge with its own Node 22
 * by `npm run edge:install`; this test process is Node 20), in front of a loopback MCP-shaped
 * upstream, with tokens signed by an issuer whose JWKS this test serves. Loopback only, bounded in
 * time; workerd is stopped at the end.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/auth-server.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const EDGE = resolve('.cache/edge/node_modules');
const NODE22 = join(EDGE, 'node/bin/node');
const available = existsSync(NODE22) && existsSync(join(EDGE, 'miniflare/package.json'));
const STARTUP_MS = 30_000;

describe('the gateway as a Worker, in workerd', skipUnless(available, 'edge tests: run `npm run edge:install` (Miniflare and workerd need Node 22, installed under .cache/)'), () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let worker: ChildProcess | undefined;
  let dir: string;
  let url: string;
  let resource: string;
  let stdout = '';

  /** The audit lines the Worker printed so far (console.log → workerd's stdout → Miniflare's). */
  const auditLines = () =>
    stdout
      .split('\n')
      .filter((line) => line.includes('"audit":"mandate-gateway"'))
      .map((line) => JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>);

  async function auditFor(predicate: (event: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    // Written when the response is complete: may land just after the client has read it.
    for (let i = 0; i < 50; i++) {
      const event = auditLines().find(predicate);
      if (event) return event;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`no such audit line in the Worker's output:\n${stdout}`);
  }

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    dir = mkdtempSync(join(tmpdir(), 'mandate-edge-'));
    const script = join(dir, 'gateway.js');
    const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--outfile', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(built.status, 0, built.stderr);

    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    resource = `${url}/mcp`;
    const config = {
      routes: [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource,
          resource_name: 'Edge test',
          authorization_servers: [issuer.issuer],
          scopes: ['banking:read'],
          tools: {
            ...listedTools(),
            transfer: { scopes: ['banking:read'], allow: 'size(act) <= 1', reason: 'transfers are not allowed through a chain of delegations' },
          },
          rate_limits: [{ name: 'per-subject', key: ['subject'], limit: 3, window_seconds: 60 }],
        },
      ],
    };
    const configFile = join(dir, 'gateway.json');
    writeFileSync(configFile, JSON.stringify(config));
    worker = spawn(NODE22, ['scripts/edge-workerd.mjs', '--config', configFile, '--script', script, '--host', '127.0.0.1', '--port', String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    worker.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    worker.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`workerd did not start in ${STARTUP_MS} ms:\n${stdout}\n${stderr}`)), STARTUP_MS);
      const check = () => {
        if (stdout.includes('{"url":')) {
          clearTimeout(timer);
          ready();
        }
      };
      worker!.stdout!.on('data', check);
      worker!.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`workerd exited (${code}):\n${stdout}\n${stderr}`));
      });
    });
    assert.match(stdout, new RegExp(`"url":"${url}"`));
  });

  after(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((r) => worker!.once('exit', r));
      worker.kill('SIGTERM');
      const timer = setTimeout(() => worker!.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await upstream?.close();
    await issuer?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const bearer = async (claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read', ...claims })}` });

  it('no token: 401 with resource_metadata, and the protected resource metadata (RFC 9728)', async () => {
    const res = await mcpPost(resource, toolCall('read_balance'));
    assert.equal(res.status, 401, res.text);
    assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${url}/.well-known/oauth-protected-resource/mcp", scope="banking:read"`);
    const prm = await fetch(`${url}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(prm.status, 200);
    assert.deepEqual(await prm.json(), { resource, authorization_servers: [issuer.issuer], scopes_supported: ['banking:read'], bearer_methods_supported: ['header'], resource_name: 'Edge test' });
    const event = await auditFor((e) => e.status === 401);
    assert.equal(event.decision, 'deny');
    assert.equal(event.route, '/mcp');
  });

  it('a valid token: the upstream answers, without the Authorization header; one audit line', async () => {
    // Cold: these first calls share the key set's one fetch, started by one request and awaited by all.
    const first = await Promise.all([1, 2, 3].map(async (id) => mcpPost(resource, toolCall('echo', {}, id), await bearer({ sub: 'erin' }))));
    assert.deepEqual(first.map((r) => r.status), [200, 200, 200], first.map((r) => r.text).join('\n'));
    const res = await mcpPost(resource, toolCall('echo', { hello: 'edge' }, 7), await bearer());
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { result: { content: [{ type: 'text', text: '{"hello":"edge"}' }] }, jsonrpc: '2.0', id: 7 });
    const reached = upstream.requests.at(-1)!;
    assert.equal(reached.method, 'POST');
    assert.equal(reached.headers.authorization, undefined, 'the token is not forwarded');
    const requestId = res.headers.get('x-request-id');
    assert.ok(requestId);
    const event = await auditFor((e) => e.request_id === requestId);
    assert.equal(event.decision, 'allow');
    assert.equal(event.status, 200);
    assert.equal(event.sub, 'alice');
    assert.equal(event.tool, 'echo');
    assert.equal(issuer.jwksHits, 1, 'the key set was fetched once, at first use');
  });

  it('a tool rule refuses: 403 with the JSON-RPC error, nothing forwarded, the reason audited', async () => {
    const before = upstream.requests.length;
    const res = await mcpPost(resource, toolCall('transfer', { amount: 5 }, 8), await bearer({ sub: 'bob', act: { sub: 'mcp-server', act: { sub: 'agent-1' } } }));
    assert.equal(res.status, 403, res.text);
    assert.equal((res.json!.error as { code: number }).code, -32003);
    assert.equal(res.json!.id, 8);
    assert.equal(upstream.requests.length, before);
    const event = await auditFor((e) => e.request_id === res.headers.get('x-request-id'));
    assert.equal(event.decision, 'deny');
    assert.equal(event.reason, 'transfers are not allowed through a chain of delegations');
  });

  it('rate limit: past 3 calls a minute for one subject, 429 with Retry-After', async () => {
    const headers = await bearer({ sub: 'carol' });
    for (let i = 1; i <= 3; i++) assert.equal((await mcpPost(resource, toolCall('echo', {}, i), headers)).status, 200);
    const res = await mcpPost(resource, toolCall('echo', {}, 4), headers);
    assert.equal(res.status, 429, res.text);
    assert.equal((res.json!.error as { code: number }).code, -32029);
    assert.ok(Number(res.headers.get('retry-after')) > 0);
    const event = await auditFor((e) => e.request_id === res.headers.get('x-request-id'));
    assert.equal(event.decision, 'deny');
    assert.match(String(event.reason), /per-subject/);
    assert.equal((await mcpPost(resource, toolCall('echo', {}, 5), await bearer({ sub: 'dave' }))).status, 200, 'another subject has its own budget');
  });
});
