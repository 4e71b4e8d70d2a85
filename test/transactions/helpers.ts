import { createHash, randomBytes } from 'node:crypto';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, DEMO_PASSWORD_HASH, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { exchange } from '../helpers/delegation-server.ts';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';

export const AGENT = 'https://agent.test';
export const BANK = 'https://bank.test/mcp';
export const REDIRECT = 'http://127.0.0.1:5998/callback';
export const SECRETS = {
  gateway: 'gateway-secret-0123456789abcdef01234567',
  gateway2: 'gateway2-secret-0123456789abcdef0123456',
  plain: 'plain-secret-0123456789abcdef0123456789',
  agent: 'agent-secret-0123456789abcdef0123456789',
  otherAgent: 'other-agent-secret-0123456789abcdef0123',
};
export const auth = {
  gateway: basic('gateway', SECRETS.gateway),
  gateway2: basic('gateway-2', SECRETS.gateway2),
  plain: basic('plain-service', SECRETS.plain),
};

/**
 * An authorization server for the transaction tests: two users (password "demo"), two gateways
 * allowed to ask for approvals, a confidential service that is not (the default), and two agents
 * that sign users in for their own resource and exchange those tokens for the bank (act chains).
 */
export async function startTransactionServer(overrides: Partial<AuthServerConfigInput> = {}): Promise<TestAuthServer> {
  process.env.TEST_TX_GATEWAY = SECRETS.gateway;
  process.env.TEST_TX_GATEWAY2 = SECRETS.gateway2;
  process.env.TEST_TX_PLAIN = SECRETS.plain;
  process.env.TEST_TX_AGENT = SECRETS.agent;
  process.env.TEST_TX_OTHER_AGENT = SECRETS.otherAgent;
  return startTestAuthServer({
    users: [
      { username: 'demo', name: 'Demo User', password_hash: DEMO_PASSWORD_HASH },
      { username: 'bob', name: 'Bob', password_hash: DEMO_PASSWORD_HASH },
    ],
    clients: [
      { client_id: 'gateway', client_name: 'Gateway', client_secret_env: 'TEST_TX_GATEWAY', grant_types: ['client_credentials'], transactions: 'allowed' },
      { client_id: 'gateway-2', client_name: 'Second gateway', client_secret_env: 'TEST_TX_GATEWAY2', grant_types: ['client_credentials'], transactions: 'allowed' },
      { client_id: 'plain-service', client_name: 'Plain service', client_secret_env: 'TEST_TX_PLAIN', grant_types: ['client_credentials'] },
      { client_id: 'public-app', client_name: 'Public app', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], transactions: 'allowed' },
    ],
    agents: [
      { client_id: 'sample-agent', client_name: 'Sample agent', client_secret_env: 'TEST_TX_AGENT', redirect_uris: [REDIRECT], owner: 'demo' },
      { client_id: 'other-agent', client_name: 'Other agent', client_secret_env: 'TEST_TX_OTHER_AGENT', redirect_uris: [REDIRECT], owner: 'demo' },
    ],
    resources: [
      { id: AGENT, name: 'Agent sign-in', scopes: [{ name: 'banking:transfer' }], may_act: 'requesting_client' },
      {
        id: BANK,
        name: 'Example Bank',
        scopes: [{ name: 'banking:transfer', description: 'Move money from your account' }],
        exchange: { allowed_actors: ['sample-agent', 'other-agent'], max_depth: 1 },
      },
    ],
    ...overrides,
  });
}

/** Signs `username` in through `clientId` (code + PKCE, over HTTP) for `resource`; the browser stays signed in. */
export async function signIn(as: TestAuthServer, options: { username?: string; clientId: string; secret: string; resource: string; browser?: FormBrowser }) {
  const { verifier, challenge } = pkcePair();
  const url = `${as.issuer}/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: options.clientId,
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: options.resource,
    scope: 'banking:transfer',
    state: 's',
  })}`;
  const browser = options.browser ?? new FormBrowser(as.issuer);
  const back = await browser.authorize(url, { username: options.username ?? 'demo' });
  const token = await postForm(
    `${as.issuer}/token`,
    { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT },
    { authorization: basic(options.clientId, options.secret) },
  );
  if (token.status !== 200) throw new Error(`token: ${token.text}`);
  return { accessToken: token.json.access_token as string, browser };
}

/** A user's token at the bank held by an agent: signed in for the agent, exchanged (act: the agent). */
export async function agentToken(as: TestAuthServer, options: { username?: string; agent?: 'sample-agent' | 'other-agent'; browser?: FormBrowser } = {}) {
  const agent = options.agent ?? 'sample-agent';
  const secret = agent === 'sample-agent' ? SECRETS.agent : SECRETS.otherAgent;
  const own = await signIn(as, { username: options.username, clientId: agent, secret, resource: AGENT, browser: options.browser });
  const exchanged = await exchange(as, { subject_token: own.accessToken, resource: BANK }, { authorization: basic(agent, secret) });
  if (exchanged.status !== 200) throw new Error(`exchange: ${exchanged.text}`);
  return { accessToken: exchanged.json.access_token as string, browser: own.browser };
}

/** A stand-in for the canonical action hash: 43 base64url characters. */
export const hashOf = (value: unknown) => createHash('sha256').update(JSON.stringify(value)).digest('base64url');
export const randomHash = () => hashOf(randomBytes(8).toString('hex'));

export async function call(as: TestAuthServer, method: string, path: string, options: { body?: unknown; authorization?: string } = {}) {
  const res = await fetch(`${as.issuer}${path}`, {
    method,
    headers: { ...(options.authorization ? { authorization: options.authorization } : {}), ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** Creates a transaction for `subjectToken` as the gateway. */
export async function create(as: TestAuthServer, subjectToken: string, overrides: Record<string, unknown> = {}, authorization = auth.gateway) {
  return call(as, 'POST', '/transactions', {
    authorization,
    body: { subject_token: subjectToken, tool: 'transfer', arguments_hash: hashOf({ amount: 250, to: 'Bob' }), summary: 'Transfer 250.00 EUR to Bob', details: { amount: '250.00', currency: 'EUR', to: 'Bob' }, ...overrides },
  });
}

export function use(as: TestAuthServer, id: string, subjectToken: string, argumentsHash = hashOf({ amount: 250, to: 'Bob' }), authorization = auth.gateway) {
  return call(as, 'POST', `/transactions/${id}/use`, { authorization, body: { subject_token: subjectToken, arguments_hash: argumentsHash } });
}

/** Opens the approval page in a signed-in browser and decides; returns the resulting page. */
export async function decide(browser: FormBrowser, id: string, decision: 'approve' | 'deny', password = 'demo') {
  const page = await browser.open(`/approve/${id}`);
  if (!page.html.includes('value="approve"')) throw new Error(`not the approval page (${page.status}): ${page.html.slice(0, 400)}`);
  return browser.submit(page, decision === 'approve' ? { decision, password } : { decision });
}

/** The audit events of the server so far (flushed first), newest first. */
export async function auditEvents(as: TestAuthServer) {
  await as.ctx.audit.flush();
  return as.store.audit.list({ limit: 1000 });
}
