import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import { gatewayConfigSchema, mcpRoute } from '../../src/config/gateway-schema.ts';
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

  it('branding.logo_url: an https logo must be on a plain host (its origin goes into the CSP img-src)', () => {
    for (const logo_url of ['https://*.example.test/logo.png', 'https://a%2a.example.test/logo.png', 'https://a;b.example.test/logo.png', 'https://a,b.example.test/logo.png', 'https://[::1]/logo.png']) {
      assert.throws(() => parseConfig(authServerConfigSchema, { branding: { logo_url } }, 'test.yaml'), (e: Error) => e instanceof ConfigError && /branding\.logo_url: an https: URL on a plain host name/.test(e.message), logo_url);
    }
    for (const logo_url of ['https://logo.example.test/logo.png', 'https://cdn-1.example.test:8443/a/b.svg?v=2']) {
      assert.equal(parseConfig(authServerConfigSchema, { branding: { logo_url } }, 'test.yaml').branding.logo_url, logo_url);
    }
  });

  it('client_id_metadata_documents.verified_hosts: host names only, normalised as a URL parser sees them', () => {
    for (const host of ['https://apps.example.com', 'apps.example.com/clients', '*.example.com', 'apps.example.com:443', 'ex%41mple.com', 'a b.example', 'a..example', 'apps.example.com.', '']) {
      assert.throws(
        () => parseConfig(authServerConfigSchema, { client_id_metadata_documents: { verified_hosts: ['ok.example', host] } }, 'test.yaml'),
        (e: Error) => e instanceof ConfigError && e.message.includes(`client_id_metadata_documents.verified_hosts.1: a host name such as apps.example.com (no scheme, path, port or wildcard); got ${JSON.stringify(host)}`),
        host,
      );
    }
    const config = parseConfig(authServerConfigSchema, { client_id_metadata_documents: { verified_hosts: ['Apps.Example.COM', 'bücher.example', '127.0.0.1'] } }, 'test.yaml');
    assert.deepEqual(config.client_id_metadata_documents.verified_hosts, ['apps.example.com', 'xn--bcher-kva.example', '127.0.0.1']);
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

describe('gateway configuration: an approval shows and decides only on what it binds', () => {
  const load = (approval: Record<string, unknown>, tool = 'transfer') =>
    parseConfig(
      gatewayConfigSchema,
      {
        routes: [
          {
            path: '/mcp',
            upstream: 'http://localhost:8000/',
            resource: 'http://localhost:8080/mcp',
            authorization_servers: ['http://localhost:9000'],
            tools: { [tool]: { approval } },
            approvals: { client_id: 'gateway', client_secret_env: 'S' },
          },
        ],
      },
      'gateway.yaml',
    );

  it('refuses a summary placeholder of an argument binds leaves out, naming the tool and the argument', () => {
    assert.throws(
      () => load({ binds: ['to', 'amount'], summary: 'Transfer {amount} {currency} to {to}' }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /routes\.0\.tools\.transfer\.approval\.summary: tool transfer: the summary shows \{currency\}, an argument the approval does not bind: add currency to binds, or take it out of the summary/);
        return true;
      },
    );
  });

  it('refuses a `when` reading an unbound argument as args.X, args["X"] or args[\'X\'], or args by anything but a fixed name', () => {
    const cases: [string, string][] = [
      ['args.currency == "EUR"', 'args.currency'],
      ['args["currency"] == "EUR"', 'args.currency'],
      ["args['currency'] == 'EUR'", 'args.currency'],
      ['has(args.memo) && args.amount > 100', 'args.memo'],
    ];
    for (const [when, shown] of cases) {
      assert.throws(
        () => load({ binds: ['to', 'amount'], when }),
        new RegExp(`routes\\.0\\.tools\\.transfer\\.approval\\.when: tool transfer: when reads ${shown.replace('.', '\\.')}, an argument the approval does not bind`),
        when,
      );
    }
    for (const when of ['size(args) > 2', 'args[tool] == 1', '"x" in args']) {
      assert.throws(() => load({ binds: ['amount'], when }), /tools\.transfer\.approval\.when: tool transfer: when reads args other than as args\.X or args\["X"\]/, when);
    }
  });

  it('accepts placeholders and `when` over bound arguments, and anything when binds is absent (all arguments are bound)', () => {
    const bound = load({ binds: ['to', 'amount', 'currency'], when: 'args.amount > 100.0 && args["currency"] != "EUR" && claims.sub != "x"', summary: 'Transfer {amount} {currency} to {to}' });
    assert.deepEqual((mcpRoute(bound.routes[0]!).tools.transfer!.approval as { binds: string[] }).binds, ['to', 'amount', 'currency']);
    assert.ok(load({ when: 'args.currency == "EUR" || size(args) > 3', summary: 'Transfer {amount} {currency}' }));
    assert.ok(load({ binds: ['amount'], when: 'myargs.x == 1 || claims.args == 1' }), 'only the args variable is read');
  });
});
