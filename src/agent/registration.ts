import { TOKEN_EXCHANGE_GRANT } from '../core/delegation.ts';
import { DEVICE_CODE_GRANT } from '../core/client-metadata.ts';
import type { Discovery } from './discovery.ts';
import { AgentError, fromOAuthError, reach } from './errors.ts';
import { isLoopbackHttp } from '../core/redirect-uri.ts';

/** How the agent came by its client id. */
export type RegistrationMethod = 'pre-registered' | 'metadata-document' | 'dynamic' | 'agent';

/** Which registration to use when the agent has no client id: `auto` follows the MCP spec's order. */
export type RegistrationPreference = 'auto' | Exclude<RegistrationMethod, 'pre-registered'>;

/** A client the SDK registered (or named by its metadata document URL), kept in the credentials file. */
export interface RegisteredClient {
  client_id: string;
  /** Only for a confidential registration (an agent): the credentials file is 0600. */
  client_secret?: string;
  method: Exclude<RegistrationMethod, 'pre-registered'>;
  /** How the AS registered the client to authenticate (RFC 7591 §3.2.1 echoes it): the agent uses that one. */
  token_endpoint_auth_method?: string;
  /** RFC 7592: to read, update or delete the registration. */
  registration_client_uri?: string;
  registration_access_token?: string;
}

export interface RegistrationRequest {
  prefer: RegistrationPreference;
  /** The `https` URL of the agent's client ID metadata document, if it publishes one. */
  clientMetadataUrl?: string;
  clientName: string;
  /** The loopback redirect URI the sign-in uses (any port matches at the AS, RFC 8252 §7.3). */
  redirectUri: string;
  /** For agent registration (seed 003): the kind of agent, shown to administrators. */
  agentType?: string;
}

export const METHOD_NAMES: Record<RegistrationMethod, string> = {
  'pre-registered': 'pre-registered',
  'metadata-document': 'client ID metadata document',
  dynamic: 'dynamic client registration (RFC 7591)',
  agent: 'agent registration',
};

async function postRegistration(endpoint: string, body: Record<string, unknown>, what: string): Promise<Record<string, unknown>> {
  const response = await reach(
    endpoint,
    { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(body) },
    'the authorization server',
  );
  const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok || typeof json.client_id !== 'string') {
    const error = typeof json.error === 'string' ? json.error : `HTTP ${response.status}`;
    const description = typeof json.error_description === 'string' ? json.error_description : undefined;
    // A refused registration is not a refused sign-in: name it for what it is.
    if (error === 'invalid_scope') throw fromOAuthError(error, description, what);
    throw new AgentError('protocol', `${what} was refused: ${error}${description ? `: ${description}` : ''}`);
  }
  return json;
}

const registered = (json: Record<string, unknown>, method: RegisteredClient['method']): RegisteredClient => ({
  client_id: json.client_id as string,
  ...(typeof json.client_secret === 'string' ? { client_secret: json.client_secret } : {}),
  method,
  ...(typeof json.token_endpoint_auth_method === 'string' ? { token_endpoint_auth_method: json.token_endpoint_auth_method } : {}),
  ...(typeof json.registration_client_uri === 'string' ? { registration_client_uri: json.registration_client_uri } : {}),
  ...(typeof json.registration_access_token === 'string' ? { registration_access_token: json.registration_access_token } : {}),
});

/** RFC 7591 at the AS's `registration_endpoint`: a public native client (RFC 8252), PKCE on a loopback redirect. */
function dynamicRegistration(endpoint: string, request: RegistrationRequest): Promise<RegisteredClient> {
  return postRegistration(
    endpoint,
    {
      client_name: request.clientName,
      redirect_uris: [request.redirectUri],
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    'the dynamic client registration',
  ).then((json) => registered(json, 'dynamic'));
}

/**
 * Agent registration (`agent_registration_endpoint`, `/aiagent/register` at Mandate): the AS makes
 * the agent a confidential client with an identity of its own — its own token (client credentials)
 * and token exchange, so the tokens it gets for a person carry `act`.
 */
function agentRegistration(endpoint: string, request: RegistrationRequest): Promise<RegisteredClient> {
  return postRegistration(
    endpoint,
    {
      client_name: request.clientName,
      redirect_uris: [request.redirectUri],
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token', TOKEN_EXCHANGE_GRANT, DEVICE_CODE_GRANT],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      agent_type: request.agentType ?? 'assistant',
    },
    'the agent registration',
  ).then((json) => registered(json, 'agent'));
}

/**
 * Gets the agent a client id at the AS when it was given none, in the order of the MCP
 * authorization spec: a client ID metadata document (when the agent publishes one and the AS
 * accepts them), then dynamic client registration, then agent registration. A preference other than
 * `auto` uses that method only. Every refusal is an AgentError saying which method failed.
 */
export async function registerAgent(found: Discovery, request: RegistrationRequest): Promise<RegisteredClient> {
  const { metadata, issuer } = found;
  const want = (method: RegisteredClient['method']) => request.prefer === 'auto' || request.prefer === method;
  const endpoint = (name: string) => (typeof metadata[name] === 'string' ? (metadata[name] as string) : undefined);
  const tried: string[] = [];

  if (want('metadata-document')) {
    if (request.clientMetadataUrl && metadata.client_id_metadata_document_supported === true) {
      const url = new URL(request.clientMetadataUrl);
      if (url.protocol !== 'https:' && !isLoopbackHttp(url)) {
        throw new AgentError('usage', `a client ID metadata document must be served over https: ${request.clientMetadataUrl}`);
      }
      return { client_id: url.href, method: 'metadata-document' };
    }
    tried.push(request.clientMetadataUrl ? `${issuer} does not accept client ID metadata documents` : 'no client ID metadata document URL was given');
  }
  for (const [method, field, register] of [
    ['dynamic', 'registration_endpoint', dynamicRegistration],
    ['agent', 'agent_registration_endpoint', agentRegistration],
  ] as const) {
    if (!want(method)) continue;
    const url = endpoint(field);
    if (!url) {
      tried.push(`no ${field} in its metadata`);
      continue;
    }
    try {
      return await register(url, request);
    } catch (error) {
      // The MCP spec's order: a refusal moves on to the next method; an unreachable AS does not.
      if (!(error instanceof AgentError) || error.kind === 'unreachable' || request.prefer !== 'auto') throw error;
      tried.push(error.message);
    }
  }
  const how = request.prefer === 'auto' ? 'no way to register' : `no ${METHOD_NAMES[request.prefer]}`;
  throw new AgentError('usage', `${issuer} offers the agent ${how} (${tried.join('; ')}): pass --client-id (and AGENT_SECRET) for a client registered there`);
}
