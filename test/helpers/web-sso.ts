import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Page } from 'playwright-core';
import { gatewayConfigSchema, type GatewayConfigInput } from '../../src/config/gateway-schema.ts';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';
import { startGateway, type GatewayHandle } from '../../src/gateway/node/server.ts';
import { startWebApp, type WebApp } from '../../examples/web-app/server.ts';
import { DEMO_PASSWORD_HASH, freePort, startTestAuthServer, type TestAuthServer } from './auth-server.ts';
import { navigating } from './chromium.ts';

export const WEB_CLIENT_SECRET = 'web-sso-test-client-secret-0123456789abcdef';
export const WEB_SESSION_SECRET = 'web-sso-test-session-secret-0123456789abcdef';

type WebRouteInput = Extract<GatewayConfigInput['routes'][number], { kind: 'web' }>;

export interface WebSso {
  as: TestAuthServer;
  app: WebApp;
  /** The gateway's public URL (http://127.0.0.1:<port>). */
  gatewayUrl: string;
  gateway: GatewayHandle;
  /** The route's start page. */
  start: string;
  auditEvents(gateway?: GatewayHandle): Promise<Record<string, unknown>[]>;
  /** Another gateway on the same config (another port, same public URL is not possible: its own). */
  startAnotherGateway(): Promise<{ gateway: GatewayHandle; url: string }>;
  close(): Promise<void>;
}

/**
 * The web SSO setup of the issue-15 tests: an authorization server with the `web-app` client and
 * two users (demo, and admin), the example web app, and a gateway whose `kind: web` route at
 * /app/ fronts it. `route` overrides route keys; `as` overrides AS keys (e.g. short tokens).
 */
export async function startWebSso(options: { route?: Partial<WebRouteInput>; as?: Partial<AuthServerConfigInput>; client?: Record<string, unknown>; gateway?: Partial<GatewayConfigInput>; env?: Record<string, string> } = {}): Promise<WebSso> {
  const gatewayPort = await freePort();
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  process.env.WEB_SSO_CLIENT_SECRET = WEB_CLIENT_SECRET;
  const as = await startTestAuthServer({
    users: [
      { username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH },
      { username: 'admin', name: 'Administrator', email: 'admin@example.com', password_hash: DEMO_PASSWORD_HASH },
    ],
    clients: [
      {
        client_id: 'web-app',
        client_name: 'Example web app',
        client_secret_env: 'WEB_SSO_CLIENT_SECRET',
        redirect_uris: [`${gatewayUrl}/app/callback`],
        // As in the demo: the gateway's client is first-party (no consent page; the person still signs in).
        first_party: true,
        post_logout_redirect_uris: [`${gatewayUrl}/app/signed-out`],
        backchannel_logout_uri: `${gatewayUrl}/app/backchannel-logout`,
        ...(options.client ?? {}),
      } as never,
    ],
    ...(options.as ?? {}),
  });
  const appPort = await freePort();
  const upstream = `http://127.0.0.1:${appPort}/`;
  const app = await startWebApp({ gateway: gatewayUrl, audience: upstream, host: '127.0.0.1', port: appPort });
  const dir = mkdtempSync(join(tmpdir(), 'mandate-web-'));
  const env = { WEB_SSO_CLIENT_SECRET: WEB_CLIENT_SECRET, WEB_SSO_SESSION_SECRET: WEB_SESSION_SECRET, ...(options.env ?? {}), REDIS_URL: options.env?.REDIS_URL };
  // One prefix for every gateway of this setup (they share Redis keys), none shared with other runs.
  const prefix = `mandate-test:${crypto.randomUUID()}`;
  const config = (port: number, auditFile: string) =>
    gatewayConfigSchema.parse({
      listen: { host: '127.0.0.1', port },
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      audit: { file: auditFile },
      rate_limit_prefix: prefix,
      ...(options.gateway ?? {}),
      routes: [
        {
          kind: 'web',
          path: '/app/',
          upstream,
          rewrite: '/',
          public_url: gatewayUrl,
          oidc: { issuer: as.issuer, client_id: 'web-app', client_secret_env: 'WEB_SSO_CLIENT_SECRET' },
          rules: [{ allow: "!path.startsWith('/app/admin/') || claims.preferred_username == 'admin'", reason: 'the admin area is for administrators' }],
          ...(options.route ?? {}),
        },
      ],
    });
  const log = pino({ level: 'silent' });
  const auditFile = join(dir, 'audit.jsonl');
  const gateway = await startGateway(config(gatewayPort, auditFile), { log, env });
  const others: GatewayHandle[] = [];
  const read = async (handle: GatewayHandle, file: string) => {
    await handle.audit.flush();
    try {
      return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    } catch {
      return [];
    }
  };
  const files = new Map<GatewayHandle, string>([[gateway, auditFile]]);
  return {
    as,
    app,
    gatewayUrl,
    gateway,
    start: `${gatewayUrl}/app/`,
    auditEvents: (handle = gateway) => read(handle, files.get(handle)!),
    async startAnotherGateway() {
      const port = await freePort();
      const file = join(dir, `audit-${port}.jsonl`);
      const other = await startGateway(config(port, file), { log, env });
      others.push(other);
      files.set(other, file);
      return { gateway: other, url: `http://127.0.0.1:${port}` };
    },
    async close() {
      for (const other of others) await other.close();
      await gateway.close();
      await app.close();
      await as.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `url` and goes through the AS's login (and consent, when shown) pages as `username`,
 * until the browser is back on the gateway's origin. Returns the interaction pages met.
 */
export async function signInThroughGateway(page: Page, url: string, gatewayUrl: string, username = 'demo', password = 'demo'): Promise<string[]> {
  const steps: string[] = [];
  await navigating(page, () => page.goto(url));
  for (let i = 0; i < 4 && !page.url().startsWith(gatewayUrl); i++) {
    if ((await page.getByLabel('Password').count()) > 0) {
      steps.push('login');
      await page.getByLabel('Username').fill(username);
      await page.getByLabel('Password').fill(password);
      await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
      continue;
    }
    if ((await page.getByRole('button', { name: 'Allow' }).count()) > 0) {
      steps.push('consent');
      await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
      continue;
    }
    throw new Error(`unexpected page ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 300)}`);
  }
  if (!page.url().startsWith(gatewayUrl)) throw new Error(`not back at the gateway: ${page.url()}`);
  return steps;
}
