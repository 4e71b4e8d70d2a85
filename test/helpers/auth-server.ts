import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { freePort } from '../../bench/lib/child.ts';

/** One free loopback port finder for tests and benchmarks. */
export { freePort };
import { authServerConfigSchema, type AuthServerConfigInput } from '../../src/config/schema.ts';
import { startAuthServer, type AuthServerHandle } from '../../src/auth-server/server.ts';
import { base64url, basicAuthorization } from '../../src/core/encoding.ts';
import { createHash, randomBytes } from 'node:crypto';

// Redis keys (short-lived state, rate limits) of this test process apart from any other run's.
process.env.MANDATE_REDIS_PREFIX ??= `mandate-test:${randomBytes(6).toString('hex')}:`;

export const DEMO_PASSWORD_HASH = 'scrypt$32768$8$1$AH4Fok4B9IgpHOepZRMo5g$eO7z_IE0tXjR2uHjrRGNHujPQ_eqiVlTSu041BmXiWE';

export interface TestAuthServer extends AuthServerHandle {
  issuer: string;
  resource: string;
  dataDir: string;
}

/**
 * Starts an authorization server on a free loopback port with a temporary data dir, the demo
 * user and one resource (`<issuer-host>/mcp`-style URL). Overrides are merged shallowly.
 */
export async function startTestAuthServer(overrides: Partial<AuthServerConfigInput> = {}): Promise<TestAuthServer> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'mandate-as-'));
  const issuer = `http://127.0.0.1:${port}`;
  const resource = 'https://mcp.example.test/mcp';
  const config = authServerConfigSchema.parse({
    issuer,
    listen: { host: '127.0.0.1', port },
    data_dir: dataDir,
    storage: { driver: 'sqlite' },
    users: [{ username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH }],
    resources: [
      {
        id: resource,
        name: 'Test MCP server',
        scopes: [
          { name: 'mcp:read', description: 'Read things' },
          { name: 'mcp:write', description: 'Change things' },
        ],
      },
      { id: 'https://api.example.test', name: 'Test API', scopes: [{ name: 'api:read' }] },
    ],
    // Defaults as shipped (registration: default deny): a test that needs a looser policy says so.
    ...overrides,
  });
  const handle = await startAuthServer(config, { log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
  return {
    ...handle,
    issuer,
    resource,
    dataDir,
    async close() {
      await handle.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = base64url(randomBytes(32));
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

export async function registerClient(issuer: string, metadata: Record<string, unknown>): Promise<Record<string, unknown> & { client_id: string; client_secret?: string }> {
  const res = await fetch(`${issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(metadata) });
  const body = (await res.json()) as Record<string, unknown> & { client_id: string };
  if (res.status !== 201) throw new Error(`registration failed: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

export async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, json, text };
}

export const basic = basicAuthorization;

export function decodeJwt(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

/**
 * Access tokens of a confidential client by client credentials, one per resource, asked for once
 * (the request must succeed: a refusal fails the test with the AS's answer).
 */
export function clientCredentialsTokens(issuer: string, clientId: string, secret: string): (resource: string) => Promise<string> {
  const tokens = new Map<string, Promise<string>>();
  return (resource) => {
    let token = tokens.get(resource);
    if (!token) {
      token = postForm(`${issuer}/token`, { grant_type: 'client_credentials', resource }, { authorization: basic(clientId, secret) }).then((res) => {
        if (res.status !== 200) throw new Error(`client_credentials for ${clientId} at ${resource}: ${res.status} ${res.text}`);
        return res.json.access_token as string;
      });
      tokens.set(resource, token);
    }
    return token;
  };
}
