/**
 * The web routes' keys (the identity assertion's signing key, the session cookie key) are made and
 * kept in the data dir only by a gateway that has a web route: one with MCP routes only writes no
 * key it does not use. A reload that adds a web route makes them then.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import { startGateway } from '../../src/gateway/node/server.ts';

const mcp = { path: '/mcp', upstream: 'http://127.0.0.1:9/', resource: 'http://127.0.0.1:9/mcp', authorization_servers: ['http://127.0.0.1:9'] };
const web = { kind: 'web', path: '/app/', upstream: 'http://127.0.0.1:9/', public_url: 'http://127.0.0.1:9', oidc: { issuer: 'http://127.0.0.1:9', client_id: 'web-app' } };

describe('the web routes\' keys in the data dir', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-web-keys-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const keys = (dataDir: string) => ['identity-key.json', 'web-session.key'].filter((name) => existsSync(join(dataDir, name)));

  it('a gateway with MCP routes only writes none; a reload that adds a web route writes both, mode 0600', async () => {
    const dataDir = join(dir, 'data');
    const file = join(dir, 'gateway.yaml');
    const base = { listen: { host: '127.0.0.1', port: 0 }, admin: { listen: { host: '127.0.0.1', port: 0 } }, data_dir: dataDir, audit: { file: join(dir, 'audit.jsonl') } };
    writeFileSync(file, stringify({ ...base, routes: [mcp] }));
    const gateway = await startGateway(gatewayConfigSchema.parse({ ...base, routes: [mcp] }), { configFile: file, env: {} });
    try {
      assert.deepEqual(keys(dataDir), []);
      writeFileSync(file, stringify({ ...base, routes: [mcp, web] }));
      assert.equal(await gateway.reload(), true);
      assert.deepEqual(keys(dataDir), ['identity-key.json', 'web-session.key']);
      for (const name of keys(dataDir)) assert.equal(statSync(join(dataDir, name)).mode & 0o777, 0o600);
    } finally {
      await gateway.close();
    }
  });
});
