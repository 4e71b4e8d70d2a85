import { discoverIssuer } from '../gateway/token-validator.ts';
import { AgentError, reach } from './errors.ts';

export interface Discovery {
  /** The MCP endpoint's resource identifier (RFC 9728 `resource`). */
  resource: string;
  resourceMetadata: Record<string, unknown>;
  issuer: string;
  /** The authorization server's metadata (RFC 8414), its issuer checked. */
  metadata: Record<string, unknown>;
  /** Scopes the 401 challenge asked for, if any. */
  challengedScopes?: string[];
}

/** Parses the parameters of a `Bearer` challenge (RFC 6750 §3). */
export function parseChallenge(header: string | null): Record<string, string> {
  const params: Record<string, string> = {};
  if (!header) return params;
  for (const match of header.matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) params[match[1]!] = match[2]!;
  return params;
}

async function getJson(url: string, what: string): Promise<Record<string, unknown>> {
  const response = await reach(url, { headers: { accept: 'application/json' } }, what, 10_000);
  if (!response.ok) throw new AgentError('protocol', `${what} at ${url} answered ${response.status}`);
  return (await response.json()) as Record<string, unknown>;
}

/**
 * From an MCP URL to its authorization server, as the MCP authorization spec has clients do it:
 * an unauthenticated request gets 401 with `resource_metadata`; the protected resource metadata
 * (RFC 9728) names the resource and its authorization servers; the AS metadata (RFC 8414) must
 * carry the same issuer. Falls back to the well-known URL when the challenge has no metadata URL.
 */
export async function discover(mcpUrl: string): Promise<Discovery> {
  const probe = await reach(
    mcpUrl,
    { method: 'POST', headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'ping' }) },
    'the MCP server',
    10_000,
  );
  const challenge = parseChallenge(probe.headers.get('www-authenticate'));
  await probe.body?.cancel().catch(() => undefined);
  const url = new URL(mcpUrl);
  const metadataUrl = challenge.resource_metadata ?? `${url.origin}/.well-known/oauth-protected-resource${url.pathname === '/' ? '' : url.pathname}`;
  const resourceMetadata = await getJson(metadataUrl, 'the protected resource metadata');
  const resource = String(resourceMetadata.resource ?? '');
  // RFC 9728 §3.3: the metadata must be about the resource that was asked for.
  if (resource.replace(/\/$/, '') !== mcpUrl.replace(/\/$/, '')) throw new AgentError('protocol', `the metadata at ${metadataUrl} is for ${resource}, not ${mcpUrl}`);
  const issuer = (resourceMetadata.authorization_servers as string[] | undefined)?.[0];
  if (!issuer) throw new AgentError('protocol', `${mcpUrl} names no authorization server`);
  let metadata: Record<string, unknown>;
  try {
    metadata = await discoverIssuer(issuer);
  } catch (error) {
    throw new AgentError('unreachable', `cannot use the authorization server ${issuer}: ${(error as Error).message} — is it running?`);
  }
  return { resource, resourceMetadata, issuer, metadata, challengedScopes: challenge.scope?.split(' ').filter(Boolean) };
}
