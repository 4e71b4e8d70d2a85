import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { OAuthError } from '../../core/errors.ts';
import type { Client } from '../../core/client-metadata.ts';
import type { ServerContext } from '../context.ts';
import { guardedFetch } from '../guarded-fetch.ts';

/** RFC 7523 §2.2 / OIDC Core §9: the assertion type of private_key_jwt. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

const jwksCache = new Map<string, { jwks: JSONWebKeySet; expiresAt: number }>();

async function clientJwks(ctx: ServerContext, client: Client): Promise<JSONWebKeySet> {
  if (client.metadata.jwks) return client.metadata.jwks as unknown as JSONWebKeySet;
  const uri = client.metadata.jwks_uri;
  if (!uri) throw new OAuthError('invalid_client', 'client authentication failed', { reason: 'client has no jwks or jwks_uri' });
  const hit = jwksCache.get(uri);
  if (hit && hit.expiresAt > ctx.now()) return hit.jwks;
  const guard = ctx.config.client_id_metadata_documents;
  const response = await guardedFetch(new URL(uri), { allowLoopback: guard.allow_loopback, maxBytes: 65_536, timeoutMs: guard.timeout_ms }).catch(
    (error: Error) => {
      throw new OAuthError('invalid_client', 'client authentication failed', { reason: `jwks_uri: ${error.message}` });
    },
  );
  if (response.status !== 200) throw new OAuthError('invalid_client', 'client authentication failed', { reason: `jwks_uri answered ${response.status}` });
  const jwks = JSON.parse(response.body) as JSONWebKeySet;
  jwksCache.set(uri, { jwks, expiresAt: ctx.now() + 300 });
  return jwks;
}

/**
 * Verifies a client assertion: signed by a key of the client, `iss` = `sub` = client_id, `aud` =
 * the issuer or the token endpoint, not expired, and its `jti` never seen before (replay).
 */
export async function verifyClientAssertion(ctx: ServerContext, client: Client, assertion: string, endpointUrl: string): Promise<void> {
  const jwks = createLocalJWKSet(await clientJwks(ctx, client));
  let payload;
  try {
    ({ payload } = await jwtVerify(assertion, jwks, {
      issuer: client.clientId,
      subject: client.clientId,
      audience: [ctx.issuer, `${ctx.issuer}/`, endpointUrl],
      clockTolerance: 5,
      requiredClaims: ['exp', 'jti'],
    }));
  } catch (error) {
    throw new OAuthError('invalid_client', 'client authentication failed', { reason: `client assertion: ${(error as { code?: string }).code ?? (error as Error).message}` });
  }
  if (payload.exp! - ctx.now() > 600) {
    throw new OAuthError('invalid_client', 'client authentication failed', { reason: 'client assertion lives longer than 10 minutes' });
  }
  const ttl = Math.max(payload.exp! - ctx.now() + 10, 1);
  if (!(await ctx.cache.add(`assertion:${client.clientId}:${payload.jti}`, 1, ttl))) {
    throw new OAuthError('invalid_client', 'client authentication failed', { reason: 'client assertion jti replayed' });
  }
}
