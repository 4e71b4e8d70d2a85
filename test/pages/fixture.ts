import { randomBytes } from 'node:crypto';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';
import { pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * One authorization server with every kind of page: a configured web app, a configured agent
 * behind an agreement, a device client, self-registration allowed up to a high-risk scope, and
 * an agent's own resource from which the agent reaches a bank by token exchange (seed 001's shape).
 */
export const NOTES = 'https://notes.example.test/mcp';
export const AGENT_RESOURCE = 'https://agent.example.test';
export const BANK = 'https://bank.example.test/mcp';

export const AGREEMENT_TEXT = `I allow digital assistants (AI agents) registered with this service to act on my behalf.

1. An assistant acts only within the permissions I grant it on the consent page that follows.
2. Every action an assistant takes for me is recorded with its name and mine.
3. I can withdraw this agreement, or any assistant's access, at any time.`;

const bankScopes = [
  { name: 'banking:read', description: 'See your balance and transactions' },
  { name: 'banking:transfer', description: 'Move money from your account', high_risk: true },
];

export function pagesConfig(redirectUri: string, overrides: Partial<AuthServerConfigInput> = {}): Partial<AuthServerConfigInput> {
  return {
    branding: { product_name: 'Mandate', primary_color: '#2f5bea', primary_color_dark: '#7c9bff', support_url: 'mailto:support@example.com' },
    registration: { allowed_scopes: ['notes:read', 'notes:write', 'banking:read', 'banking:transfer'] },
    resources: [
      {
        id: NOTES,
        name: 'Notes',
        scopes: [
          { name: 'notes:read', description: 'Read your notes' },
          { name: 'notes:write', description: 'Create and change your notes' },
        ],
      },
      { id: AGENT_RESOURCE, name: 'Agent sign-in', scopes: bankScopes, may_act: 'requesting_client' },
      { id: BANK, name: 'Example Bank', scopes: bankScopes },
    ],
    clients: [
      { client_id: 'notes-app', client_name: 'Notes web app', token_endpoint_auth_method: 'none', redirect_uris: [redirectUri] },
      { client_id: 'tv-app', client_name: 'Living-room TV', token_endpoint_auth_method: 'none', grant_types: ['urn:ietf:params:oauth:grant-type:device_code'] },
    ],
    agents: [{ client_id: 'sample-agent', client_name: 'Sample agent', owner: 'demo', redirect_uris: [redirectUri], authentication_policy: 'Agent-Consent-Login' }],
    agreements: [{ id: 'agent-consent', name: 'Digital assistant consent', version: 3, text: AGREEMENT_TEXT, reconsent_days: 180 }],
    authentication_policies: [{ name: 'Agent-Consent-Login', steps: ['login', { agreement: 'agent-consent' }] }],
    ...overrides,
  };
}

export function startPagesServer(redirectUri: string, overrides: Partial<AuthServerConfigInput> = {}): Promise<TestAuthServer> {
  return startTestAuthServer(pagesConfig(redirectUri, overrides));
}

export interface Authorization {
  url: string;
  verifier: string;
}

/** An authorization request (code + PKCE S256) as a client would build it. */
export function authorization(as: TestAuthServer, params: { clientId: string; redirectUri: string; resource: string; scope: string; state?: string }): Authorization {
  const { verifier, challenge } = pkcePair();
  const url = new URL(`${as.issuer}/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: params.clientId,
    redirect_uri: params.redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: params.state ?? randomBytes(8).toString('hex'),
    scope: params.scope,
    resource: params.resource,
  }).toString();
  return { url: url.href, verifier };
}

/** A public client that registered itself (RFC 7591): its name is its own choice. */
export async function selfRegistered(as: TestAuthServer, redirectUri: string, clientName: string) {
  const client = await registerClient(as.issuer, {
    client_name: clientName,
    software_id: randomBytes(8).toString('hex'),
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
  });
  return client.client_id;
}

/** Redeems a code of a public client; returns the token response. */
export async function redeem(as: TestAuthServer, code: string, verifier: string, clientId: string, redirectUri: string) {
  return postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirectUri, client_id: clientId });
}
