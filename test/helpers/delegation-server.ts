import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormBrowser } from './browser-driver.ts';
import { basic, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from './auth-server.ts';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

export const R = {
  mcp: 'https://todo-mcp.test/mcp',
  api: 'https://todo-api.test',
  agent: 'https://agent.test',
  gateway: 'https://gateway.test/mcp',
  deep: 'https://deep.test',
  opaque: 'https://opaque.test',
  seed: 'https://seed-mapping.test',
  identity: 'https://identity.test',
  eraser: 'https://eraser.test',
} as const;

export const SECRETS = { mcp: 'mcp-server-secret-0123456789abcdef0123', agent: 'agent-secret-0123456789abcdef0123456', other: 'other-secret-0123456789abcdef0123456' };
export const AGENT_REDIRECT = 'http://localhost:3000/callback';

/**
 * An authorization server configured like the seeds: a Todo MCP server client that exchanges user
 * tokens for Todo API tokens (seed 000), a sample agent with a consent agreement (seed 001), a
 * gateway resource and a deeper API for chains.
 */
export async function startDelegationServer(overrides: Record<string, unknown> = {}): Promise<TestAuthServer & { adminToken: string }> {
  process.env.TEST_MCP_SECRET = SECRETS.mcp;
  process.env.TEST_AGENT_SECRET = SECRETS.agent;
  process.env.TEST_OTHER_SECRET = SECRETS.other;
  const as = await startTestAuthServer({
    clients: [
      // The tests' introspecting service: explicitly allowed to see any token (introspection-access.ts).
      { client_id: 'mcp-server', client_name: 'Todo MCP server', client_secret_env: 'TEST_MCP_SECRET', grant_types: ['client_credentials', TOKEN_EXCHANGE] as never, introspection: 'allowed' },
      { client_id: 'other-service', client_name: 'Other service', client_secret_env: 'TEST_OTHER_SECRET', grant_types: ['client_credentials', TOKEN_EXCHANGE] as never },
    ],
    agents: [
      {
        client_id: 'sample-agent',
        client_name: 'Sample agent',
        client_secret_env: 'TEST_AGENT_SECRET',
        redirect_uris: [AGENT_REDIRECT],
        authentication_policy: 'Agent-Consent-Login',
        owner: 'demo',
      },
    ],
    agreements: [{ id: 'agent-consent', name: 'Agent consent', version: 1, text: 'I allow digital assistants to act on my behalf.', reconsent_days: 180 }],
    authentication_policies: [{ name: 'Agent-Consent-Login', steps: ['login', { agreement: 'agent-consent' }] }],
    resources: [
      { id: R.mcp, name: 'Todo MCP server', scopes: [{ name: 'todo_api:read' }, { name: 'todo_api:write' }], may_act: { client_id: 'mcp-server' } },
      {
        id: R.api,
        name: 'Todo API',
        scopes: [{ name: 'todo_api:read' }, { name: 'todo_api:write' }, { name: 'banking:read' }],
        may_act: { client_id: 'other-service' },
        exchange: { allowed_actors: ['mcp-server', 'sample-agent', 'other-service'], max_depth: 2 },
      },
      { id: R.agent, name: 'Sample agent', scopes: [{ name: 'banking:read' }, { name: 'banking:transfer' }], may_act: 'requesting_client' },
      {
        id: R.gateway,
        name: 'Banking through the gateway',
        scopes: [{ name: 'banking:read' }, { name: 'banking:transfer' }],
        may_act: { client_id: 'mcp-server' },
        exchange: { allowed_actors: ['sample-agent'], max_depth: 1 },
        claims: { agent_owner: 'has(client.agent) && client.agent != null ? client.agent.owner : null' },
      },
      { id: R.deep, name: 'Deep API', scopes: [{ name: 'banking:read' }], exchange: { max_depth: 2 } },
      {
        id: R.seed,
        name: 'Seed 001 mapping',
        scopes: [{ name: 'banking:read' }],
        claims: { sub: 'subject.sub', act: 'has(subject.may_act) && subject.may_act.sub == actor.sub ? subject.may_act : null', seen_by: '"mapping:" + actor.sub' },
      },
      { id: R.identity, name: 'Identity only', exchange: { require_may_act: false } },
      { id: R.eraser, name: 'Erases the chain', scopes: [{ name: 'banking:read' }], claims: { act: 'null' }, exchange: { max_depth: 2 } },
      { id: R.opaque, name: 'Opaque API', scopes: [{ name: 'todo_api:read' }], token_format: 'opaque', exchange: { require_may_act: false } },
    ] as never,
    ...overrides,
  });
  const adminToken = readFileSync(join(as.dataDir, 'secrets', 'admin.token'), 'utf8').trim();
  return Object.assign(as, { adminToken });
}

export const auth = {
  mcp: { authorization: basic('mcp-server', SECRETS.mcp) },
  agent: { authorization: basic('sample-agent', SECRETS.agent) },
  other: { authorization: basic('other-service', SECRETS.other) },
};

/** Signs the demo user in through `clientId` for `resource` and redeems the code. */
export async function userToken(
  as: TestAuthServer,
  options: { clientId: string; redirectUri: string; resource: string; scope: string; clientAuth?: Record<string, string>; browser?: FormBrowser },
) {
  const { verifier, challenge } = pkcePair();
  const url = `${as.issuer}/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: options.clientId,
    redirect_uri: options.redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: options.resource,
    scope: options.scope,
    state: 's',
  })}`;
  const browser = options.browser ?? new FormBrowser(as.issuer);
  const back = await browser.authorize(url);
  const form: Record<string, string> = { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: options.redirectUri };
  if (!options.clientAuth) form.client_id = options.clientId;
  const token = await postForm(`${as.issuer}/token`, form, options.clientAuth ?? {});
  if (token.status !== 200) throw new Error(`token: ${token.text}`);
  return { token: token.json as { access_token: string; refresh_token?: string; scope: string }, browser };
}

export function exchange(as: TestAuthServer, form: Record<string, string>, headers: Record<string, string>) {
  return postForm(`${as.issuer}/token`, { grant_type: TOKEN_EXCHANGE, subject_token_type: ACCESS_TOKEN_TYPE, ...form }, headers);
}
