import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import { configDocs, configJsonSchemas } from '../../src/config/json-schema.ts';
import { ConfigError, loadAuthServerConfig, parseConfig } from '../../src/config/load.ts';

describe('configuration', () => {
  it('the committed JSON Schemas match the zod schemas (run `npm run schema` after changing them)', () => {
    for (const [file, schema] of Object.entries(configJsonSchemas())) {
      const committed = JSON.parse(readFileSync(`schema/${file}`, 'utf8'));
      assert.deepEqual(committed, JSON.parse(JSON.stringify(schema)), `schema/${file} is stale`);
    }
    assert.equal(readFileSync('docs/configuration.md', 'utf8'), configDocs(), 'docs/configuration.md is stale');
  });

  it('rejects unknown keys at every level, naming the path', () => {
    assert.throws(() => parseConfig(authServerConfigSchema, { isuer: 'http://x' }, 'test.yaml'), (e: Error) => e instanceof ConfigError && /isuer/.test(e.message));
    assert.throws(
      () => parseConfig(authServerConfigSchema, { tokens: { access_token_tll: 5 } }, 'test.yaml'),
      (e: Error) => /tokens/.test(e.message) && /access_token_tll/.test(e.message),
    );
    assert.throws(() => parseConfig(authServerConfigSchema, { resources: [{ id: 'not a url', name: 'x' }] }, 'test.yaml'), /resources\.0\.id/);
  });

  it('fills documented defaults', () => {
    const config = parseConfig(authServerConfigSchema, {}, 'empty');
    assert.equal(config.issuer, 'http://localhost:9000');
    assert.equal(config.tokens.access_token_ttl, 900);
    assert.equal(config.data_dir, '.mandate');
    assert.equal(config.client_id_metadata_documents.allow_loopback, false);
  });

  it('the demo configuration is valid', async () => {
    const config = await loadAuthServerConfig('examples/demo/auth-server.yaml');
    assert.equal(config.issuer, 'http://localhost:9000');
    assert.ok(config.users.some((u) => u.username === 'demo'));
    assert.ok(parse(readFileSync('examples/demo/auth-server.yaml', 'utf8')));
  });
});
