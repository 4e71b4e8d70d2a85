/**
 * `mandate gateway edge-config <gateway.yaml>`: the Node gateway's YAML validated with the same
 * schema and compiled to the JSON of the gateway Worker's MANDATE_GATEWAY_CONFIG binding; the
 * Node-only settings left out with a warning (refused with --strict); the secrets the Worker needs
 * listed. The JSON it writes is then given to the Worker entry (in this process), which serves it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { parse } from 'yaml';
import worker from '../../src/gateway/workers/index.ts';
import { compileEdgeConfig, WORKER_VAR_LIMIT_BYTES } from '../../src/cli/edge-config.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;
const DEMO_GATEWAY = new URL('../../examples/demo/gateway.yaml', import.meta.url).pathname;

function mandate(args: string[]) {
  const run = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('mandate gateway edge-config', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-edge-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('compiles the demo gateway.yaml: the routes as written, listen/admin/audit/data_dir left out with a warning each, the secrets listed', () => {
    const out = join(dir, 'gateway-config.json');
    const run = mandate(['gateway', 'edge-config', DEMO_GATEWAY, '--out', out]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '', 'with --out, nothing on stdout');
    for (const key of ['listen', 'admin', 'audit', 'data_dir']) assert.match(run.stderr, new RegExp(`^warning: left out, ${key}: `, 'm'));
    assert.match(run.stderr, /audit: no audit file at the edge: each event is a JSON line on console\.log \(Workers Logs\)/);
    assert.match(run.stderr, /secrets the Worker needs \(wrangler secret put NAME\): MANDATE_GATEWAY_CLIENT_SECRET, MANDATE_WEB_APP_CLIENT_SECRET, MANDATE_WEB_COOKIE_KEY, MANDATE_WEB_IDENTITY_KEY\n/);
    const text = readFileSync(out, 'utf8');
    assert.equal(text.split('\n').length, 2, 'one compact line');
    const json = JSON.parse(text) as Record<string, unknown>;
    const yaml = parse(readFileSync(DEMO_GATEWAY, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(json), ['routes']);
    assert.deepEqual(json.routes, yaml.routes, 'the routes as written, no defaults filled in');
  });

  it('writes to stdout without --out', () => {
    const run = mandate(['gateway', 'edge-config', DEMO_GATEWAY]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((JSON.parse(run.stdout) as { routes: unknown[] }).routes.length, 2);
  });

  it('--strict refuses the Node-only settings (exit 2), naming each', () => {
    const out = join(dir, 'strict.json');
    const run = mandate(['gateway', 'edge-config', DEMO_GATEWAY, '--strict', '--out', out]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /has settings that do not apply at the edge \(--strict/);
    for (const key of ['listen', 'admin', 'audit', 'data_dir']) assert.match(run.stderr, new RegExp(`^  ${key}: `, 'm'));
    assert.throws(() => readFileSync(out), /ENOENT/, 'nothing written');
    // A file with only what applies at the edge passes --strict, without warnings.
    const edgeOnly = join(dir, 'edge.yaml');
    writeFileSync(edgeOnly, 'routes:\n  - path: /mcp\n    upstream: https://mcp.example.com/\n    resource: https://gw.example.com/mcp\n    authorization_servers: [https://auth.example.com]\n');
    const strict = mandate(['gateway', 'edge-config', edgeOnly, '--strict']);
    assert.equal(strict.code, 0, strict.stderr);
    assert.equal(strict.stderr, '');
  });

  it('an invalid file: exit 2, every problem with its path, nothing written', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'routes:\n  - path: mcp\n    resource: https://gw.example.com/mcp\n    authorization_servers: []\n    upstrem: https://mcp.example.com/\n');
    const out = join(dir, 'bad.json');
    const run = mandate(['gateway', 'edge-config', bad, '--out', out]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, new RegExp(`invalid configuration in ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:`));
    assert.match(run.stderr, /routes\.0\.path: /);
    assert.match(run.stderr, /routes\.0\.upstream: /);
    assert.match(run.stderr, /routes\.0\.authorization_servers: /);
    assert.match(run.stderr, /routes\.0: Unrecognized key: "upstrem"/);
    assert.throws(() => readFileSync(out), /ENOENT/);
    const missing = mandate(['gateway', 'edge-config', join(dir, 'none.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read .*none\.yaml/);
    const usage = mandate(['gateway', 'edge-config']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /one config file, not 0/);
  });

  it('the JSON it writes is what the gateway Worker serves: 401 with resource_metadata, the metadata document, the gateway JWKS of the web route', async () => {
    const json = readFileSync(join(dir, 'gateway-config.json'), 'utf8');
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const env = {
      MANDATE_GATEWAY_CONFIG: json,
      MANDATE_GATEWAY_CLIENT_SECRET: 'gateway-secret',
      MANDATE_WEB_APP_CLIENT_SECRET: 'web-secret',
      MANDATE_WEB_COOKIE_KEY: Buffer.alloc(32, 7).toString('base64url'),
      MANDATE_WEB_IDENTITY_KEY: JSON.stringify(await exportJWK(privateKey)),
    };
    const call = (path: string, init?: RequestInit) => worker.fetch(new Request(`http://localhost:8080${path}`, init), env, { waitUntil: () => undefined });
    const refused = await call('/mcp', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('www-authenticate')?.startsWith('Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"'), true, refused.headers.get('www-authenticate') ?? '');
    const prm = (await (await call('/.well-known/oauth-protected-resource/mcp')).json()) as Record<string, unknown>;
    assert.deepEqual([prm.resource, prm.authorization_servers], ['http://localhost:8080/mcp', ['http://localhost:9000']]);
    const jwks = (await (await call('/.well-known/mandate-gateway-jwks.json')).json()) as { keys: { x: string; d?: string }[] };
    const publicJwk = await exportJWK(privateKey);
    assert.deepEqual(jwks.keys.map((key) => [key.x, key.d]), [[publicJwk.x, undefined]]);
  });

  it('lists a web route\'s own session secret instead of MANDATE_WEB_COOKIE_KEY, and the introspection and mediation secrets; warns over the variable size limit', () => {
    const route = { path: '/mcp', upstream: 'https://mcp.example.com/', resource: 'https://gw.example.com/mcp', authorization_servers: ['https://auth.example.com'] };
    const compiled = compileEdgeConfig(
      {
        routes: [
          { ...route, token: { mode: 'introspection', introspection: { client_id: 'gw', client_secret_env: 'INTROSPECT_SECRET' } }, mediation: { client_id: 'gw', client_secret_env: 'EXCHANGE_SECRET', resource: 'https://api.example.com' } },
          { kind: 'web', path: '/app/', upstream: 'https://app.example.com/', public_url: 'https://gw.example.com', oidc: { issuer: 'https://auth.example.com', client_id: 'app' }, session: { secret_env: 'APP_COOKIE_KEY' } },
        ],
      },
      'test',
    );
    assert.deepEqual(compiled.secrets, ['APP_COOKIE_KEY', 'EXCHANGE_SECRET', 'INTROSPECT_SECRET', 'MANDATE_WEB_IDENTITY_KEY']);
    assert.deepEqual([compiled.leftOut, compiled.warnings], [[], []]);
    const big = compileEdgeConfig({ routes: Array.from({ length: 40 }, (_, i) => ({ ...route, path: `/mcp${i}`, resource_name: 'x'.repeat(100) })) }, 'test');
    assert.ok(big.json.length > WORKER_VAR_LIMIT_BYTES);
    assert.match(big.warnings[0] ?? '', new RegExp(`^the JSON is ${big.json.length} bytes, over Cloudflare's 5120-byte limit on one variable`));
  });
});
