import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import { startAuthServer, type AuthServerHandle } from '../../src/auth-server/server.ts';
import { FormBrowser } from './browser-driver.ts';
import { DEMO_PASSWORD_HASH, basic, freePort, pkcePair, postForm } from './auth-server.ts';

/**
 * An authorization server for the fault suite: configured clients only (the registration policy
 * is not what these tests are about), the storage and Redis it is given, and a port and data dir
 * that survive a restart, so the same issuer with the same keys can come back.
 */
export const FAULT_APP = { client_id: 'fault-app', redirect: 'http://127.0.0.1:4000/callback' };
export const FAULT_SERVICE = 'fault-service';

export interface FaultAuthServer extends AuthServerHandle {
  issuer: string;
  port: number;
  dataDir: string;
  resource: string;
  logs: Record<string, unknown>[];
  /** Stops the server; the data dir stays for a restart (removed by `remove()`). */
  close(): Promise<void>;
  remove(): void;
}

export async function startFaultAuthServer(options: {
  env: Record<string, string | undefined>;
  driver: 'postgres' | 'sqlite';
  port?: number;
  dataDir?: string;
  resource?: string;
}): Promise<FaultAuthServer> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'mandate-fault-as-'));
  const issuer = `http://127.0.0.1:${port}`;
  const resource = options.resource ?? 'https://mcp.example.test/mcp';
  const config = authServerConfigSchema.parse({
    issuer,
    listen: { host: '127.0.0.1', port },
    data_dir: dataDir,
    storage: { driver: options.driver },
    users: [{ username: 'demo', password_hash: DEMO_PASSWORD_HASH }],
    resources: [{ id: resource, name: 'Fault MCP server', scopes: [{ name: 'mcp:read' }] }],
    clients: [
      { client_id: FAULT_APP.client_id, token_endpoint_auth_method: 'none', redirect_uris: [FAULT_APP.redirect], grant_types: ['authorization_code', 'refresh_token'] },
      { client_id: FAULT_SERVICE, grant_types: ['client_credentials'], default_resource: resource },
    ],
  });
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const handle = await startAuthServer(config, { log, env: options.env });
  return { ...handle, issuer, port, dataDir, resource, logs, remove: () => rmSync(dataDir, { recursive: true, force: true }) };
}

/** The generated secret of the configured service client, as `Authorization: Basic`. */
export const serviceAuth = (as: FaultAuthServer) => ({
  authorization: basic(FAULT_SERVICE, readFileSync(join(as.dataDir, 'secrets', `${FAULT_SERVICE}.secret`), 'utf8').trim()),
});

/** Signs the demo user in (once per browser) and returns a fresh code with its verifier. */
export async function freshCode(as: FaultAuthServer, browser: FormBrowser): Promise<{ code: string; verifier: string }> {
  const { verifier, challenge } = pkcePair();
  const url = `${as.issuer}/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: FAULT_APP.client_id,
    redirect_uri: FAULT_APP.redirect,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: as.resource,
    scope: 'mcp:read',
    state: 's',
  })}`;
  const back = await browser.authorize(url);
  return { code: back.searchParams.get('code')!, verifier };
}

export const redeem = (as: FaultAuthServer, code: { code: string; verifier: string }) =>
  postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: code.code, code_verifier: code.verifier, redirect_uri: FAULT_APP.redirect, client_id: FAULT_APP.client_id });

export const refresh = (as: FaultAuthServer, refreshToken: string) =>
  postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: FAULT_APP.client_id });

/**
 * What would have killed a service process: node:test catches uncaught exceptions (an unheard
 * `error` event from node-postgres is one) and carries on, so the fault tests look for them here.
 */
const crashes: string[] = [];
process.on('uncaughtException', (error) => crashes.push(`uncaught: ${error.message}`));
process.on('unhandledRejection', (reason) => crashes.push(`unhandled rejection: ${String(reason)}`));
export const processCrashes = () => [...crashes];

/** 503 temporarily_unavailable with Retry-After: what a client sees while a dependency is down. */
export function isUnavailable(res: { status: number; headers: Headers; json: Record<string, unknown> }): boolean {
  return res.status === 503 && res.json.error === 'temporarily_unavailable' && Number(res.headers.get('retry-after')) > 0;
}
