import { AgentError, networkReason, reach } from './errors.ts';

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

/**
 * The MCP SDK's `checkResourceAllowed` rule: a protected resource metadata document may describe
 * the MCP URL itself or a resource above it (same origin, its path a prefix ending on a segment
 * boundary) — a root document names the origin.
 */
export function resourceCovers(resource: string, mcpUrl: string): boolean {
  let r: URL, m: URL;
  try {
    r = new URL(resource);
    m = new URL(mcpUrl);
  } catch {
    return false;
  }
  if (r.origin !== m.origin) return false;
  const base = r.pathname.endsWith('/') ? r.pathname : `${r.pathname}/`;
  const path = m.pathname.endsWith('/') ? m.pathname : `${m.pathname}/`;
  return path.startsWith(base);
}

/**
 * RFC 8414 §3.1 with the MCP authorization spec's order for OpenID providers: for an issuer with a
 * path, `oauth-authorization-server` and `openid-configuration` inserted before the path, then
 * `openid-configuration` appended to it (OIDC Discovery §4); at the root, the first two. The
 * document must name the issuer asked for (RFC 8414 §3.3), else it is refused — never another.
 */
export async function authorizationServerMetadata(issuer: string): Promise<Record<string, unknown>> {
  const url = new URL(issuer);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  const candidates = [`${url.origin}/.well-known/oauth-authorization-server${path}`, `${url.origin}/.well-known/openid-configuration${path}`];
  if (path) candidates.push(`${url.origin}${path}/.well-known/openid-configuration`);
  const failures: string[] = [];
  for (const candidate of candidates) {
    let response: Response;
    try {
      response = await fetch(candidate, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5_000) });
    } catch (error) {
      failures.push(`${candidate}: ${networkReason(error)}`);
      continue;
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      failures.push(`${candidate}: ${response.status}`);
      continue;
    }
    const metadata = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
    if (!metadata || typeof metadata !== 'object') throw new Error(`${candidate} is not a JSON object`);
    if (metadata.issuer !== issuer) throw new AgentError('protocol', `the metadata of ${issuer} at ${candidate} names issuer ${String(metadata.issuer)}: refused (RFC 8414 §3.3)`);
    return metadata;
  }
  throw new Error(`cannot fetch the metadata of ${issuer} (${failures.join('; ')})`);
}

/** The protected resource metadata at `url`, or undefined when there is none (4xx). */
async function resourceMetadataAt(url: string): Promise<Record<string, unknown> | undefined> {
  const response = await reach(url, { headers: { accept: 'application/json' } }, 'the protected resource metadata', 10_000);
  if (response.status >= 400 && response.status < 500) {
    await response.body?.cancel().catch(() => undefined);
    return undefined;
  }
  if (!response.ok) throw new AgentError('protocol', `the protected resource metadata at ${url} answered ${response.status}`);
  return (await response.json()) as Record<string, unknown>;
}

/**
 * From an MCP URL to its authorization server, as the MCP authorization spec has clients do it:
 * an unauthenticated request gets 401, perhaps with `resource_metadata`; the protected resource
 * metadata (RFC 9728) is read from there, else from the path-inserted well-known URL, else from the
 * root one; it must name a resource that covers the MCP URL (`resourceCovers`) and its
 * authorization servers; the AS metadata (RFC 8414, or OpenID discovery) must carry the same issuer.
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
  const root = `${url.origin}/.well-known/oauth-protected-resource`;
  const candidates = challenge.resource_metadata ? [challenge.resource_metadata] : [...(url.pathname === '/' ? [] : [`${root}${url.pathname.replace(/\/$/, '')}`]), root];
  let resourceMetadata: Record<string, unknown> | undefined;
  let metadataUrl = candidates[0]!;
  for (const candidate of candidates) {
    metadataUrl = candidate;
    resourceMetadata = await resourceMetadataAt(candidate);
    if (resourceMetadata) break;
  }
  if (!resourceMetadata) throw new AgentError('protocol', `${mcpUrl} publishes no protected resource metadata (tried ${candidates.join(', ')})`);
  const resource = String(resourceMetadata.resource ?? '');
  // RFC 9728 §3.3: the metadata must be about the resource that was asked for (or one above it).
  if (!resourceCovers(resource, mcpUrl)) throw new AgentError('protocol', `the metadata at ${metadataUrl} is for ${resource}, not ${mcpUrl}`);
  const issuer = (resourceMetadata.authorization_servers as string[] | undefined)?.[0];
  if (!issuer) throw new AgentError('protocol', `${mcpUrl} names no authorization server`);
  let metadata: Record<string, unknown>;
  try {
    metadata = await authorizationServerMetadata(issuer);
  } catch (error) {
    if (error instanceof AgentError) throw error;
    throw new AgentError('unreachable', `cannot use the authorization server ${issuer}: ${(error as Error).message} — is it running?`);
  }
  return { resource, resourceMetadata, issuer, metadata, challengedScopes: challenge.scope?.split(' ').filter(Boolean) };
}
