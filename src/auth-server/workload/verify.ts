import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { ASSERTION_ALGORITHMS } from '../client-auth/private-key-jwt.ts';
import { issuerKeys } from '../federation/issuer-keys.ts';
import { hashSecret } from '../hash.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import type { ClientRecord } from '../../store/types.ts';
import type { WorkloadIdentityConfig } from '../../config/schema.ts';

/**
 * Workload identity federation (MCP SEP-1933, RFC 7521/7523): a JWT the platform issued to a
 * workload (a Kubernetes service account token, a SPIFFE JWT-SVID) identifies a client registered
 * with `workload_identity: { issuer, subject, claims }`. Used two ways, with the same checks:
 * - as client authentication (RFC 7523 §2.2, `client_assertion`): Mandate's variant, because the
 *   platform's `sub` is not the client_id (§3 item 2.B) — `client_id` is required in the body and
 *   the JWT's (`iss`, `sub`) must be that client's registered workload identity;
 * - as the grant (RFC 7523 §2.1, SEP-1933): `grant_type=jwt-bearer`, `assertion=<workload JWT>`,
 *   no client authentication; the client is the one (`iss`, `sub`) is registered to.
 *
 * The checks, cheap first and the signature before anything that touches the store: `iss` on the
 * `workload_identity.issuers` allow-list → signature with the issuer's keys (its `jwks_uri`, else
 * its discovery document; asymmetric algorithms only) → `typ` absent or `JWT` (an ID-JAG, an access
 * token, a DPoP proof or a logout token is not a workload identity) → `aud` one value naming this
 * server (its issuer, with or without a trailing slash, or its token endpoint: SEP-1933 says the
 * token endpoint, deployed clients send the issuer) → `exp` required, `nbf`/`iat` not in the future
 * (30 s skew), lifetime ≤ the issuer's `max_lifetime_seconds` → (`iss`, `sub`) registered to a
 * client, its extra `claims` equal → `jti` present (unless the issuer sets `require_jti: false`),
 * spent by the caller with `spendWorkloadJti` once its own checks passed.
 */

/** A refusal; the caller turns it into its endpoint's error (`invalid_client` or `invalid_grant`), the reason goes to the audit log. */
export class WorkloadRefused extends Error {
  override name = 'WorkloadRefused';
  constructor(readonly reason: string) {
    super(reason);
  }
}

export const WORKLOAD_SKEW_SECONDS = 30;

export interface VerifiedWorkload {
  client: ClientRecord;
  claims: JWTPayload & { iss: string; sub: string; exp: number };
  /** `wif:<sha256 iss>:<sha256 jti>`, when the JWT has a `jti`. */
  replayKey?: string;
}

type IssuerEntry = WorkloadIdentityConfig['issuers'][number];

/** The allow-list entry of the JWT's (unverified) issuer, if it is a platform issuer at all. */
export function workloadIssuerOf(ctx: ServerContext, jwt: string): IssuerEntry | undefined {
  let iss: unknown;
  try {
    iss = decodeJwt(jwt).iss;
  } catch {
    return undefined;
  }
  return ctx.config.workload_identity.issuers.find((entry) => entry.issuer === iss);
}

const refuse = (reason: string): never => {
  throw new WorkloadRefused(reason);
};

/**
 * Verifies a workload JWT. With `client` (client authentication), the JWT must be that client's;
 * without, the client is looked up by (`iss`, `sub`). Throws `WorkloadRefused`.
 */
export async function verifyWorkloadJwt(ctx: ServerContext, jwt: string, expect: { client?: ClientRecord } = {}): Promise<VerifiedWorkload> {
  let header;
  try {
    header = decodeProtectedHeader(jwt);
  } catch {
    return refuse('the workload JWT is not a JWT');
  }
  const entry = workloadIssuerOf(ctx, jwt);
  if (!entry) return refuse('the workload JWT issuer is not in workload_identity.issuers');
  const registered = expect.client?.workloadIdentity;
  if (expect.client && !registered) return refuse(`client ${expect.client.clientId} has no workload identity`);
  if (registered && registered.issuer !== entry.issuer) return refuse(`the workload JWT issuer ${entry.issuer} is not the client's (${registered.issuer})`);

  const keys = issuerKeys(ctx, { issuer: entry.issuer, jwks_uri: entry.jwks_uri, allowLoopback: entry.allow_loopback });
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(jwt, keys, { algorithms: ASSERTION_ALGORITHMS, issuer: entry.issuer, clockTolerance: WORKLOAD_SKEW_SECONDS, requiredClaims: ['sub', 'exp', 'aud'] }));
  } catch (error) {
    return refuse(`workload JWT: ${(error as { code?: string }).code ?? ''} ${(error as Error).message}`.trim());
  }
  const typ = typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : undefined;
  // RFC 8725 §3.11: an explicitly typed JWT (an ID-JAG, an access token, a DPoP proof, a logout token) is something else.
  if (typ !== undefined && typ !== 'jwt') return refuse(`workload JWT typ ${String(header.typ)} is not a workload identity (JWT or none)`);

  const accepted = new Set([ctx.issuer, `${ctx.issuer}/`, endpointUrls(ctx.issuer).token]);
  const aud = Array.isArray(payload.aud) ? (payload.aud.length === 1 ? payload.aud[0] : undefined) : payload.aud;
  if (typeof aud !== 'string') return refuse(`workload JWT aud must be one value, got ${JSON.stringify(payload.aud)}`);
  if (!accepted.has(aud)) return refuse(`workload JWT aud ${JSON.stringify(aud)} is not this server`);

  const now = ctx.now();
  const exp = payload.exp!;
  if (typeof payload.iat === 'number' && payload.iat > now + WORKLOAD_SKEW_SECONDS) return refuse('workload JWT iat is in the future');
  const from = typeof payload.iat === 'number' ? payload.iat : typeof payload.nbf === 'number' ? payload.nbf : now;
  if (exp - from > entry.max_lifetime_seconds) return refuse(`workload JWT lives ${exp - from} s, more than ${entry.max_lifetime_seconds} s`);

  const sub = payload.sub!;
  const client = expect.client ?? (await ctx.store.clients.findByWorkload(entry.issuer, sub));
  if (!client) return refuse(`no client has the workload identity ${sub} of ${entry.issuer}`);
  const identity = client.workloadIdentity;
  if (!identity || identity.issuer !== entry.issuer || identity.subject !== sub) return refuse(`workload JWT sub ${sub} is not the workload identity of ${client.clientId}`);
  for (const [name, value] of Object.entries(identity.claims ?? {})) {
    const actual = claimAt(payload, name);
    if (actual !== value) return refuse(`workload JWT claim ${name} is ${JSON.stringify(actual)}, not ${JSON.stringify(value)}`);
  }

  const jti = payload.jti;
  if (jti !== undefined && (typeof jti !== 'string' || jti === '')) return refuse('workload JWT jti must be a non-empty string');
  if (jti === undefined && entry.require_jti) return refuse('workload JWT has no jti (replay check; the issuer sets require_jti)');
  return {
    client,
    claims: payload as VerifiedWorkload['claims'],
    ...(jti !== undefined ? { replayKey: `wif:${hashSecret(entry.issuer)}:${hashSecret(jti)}` } : {}),
  };
}

/** Marks the JWT's `jti` used until it expires (plus the skew); refuses a second use. */
export async function spendWorkloadJti(ctx: ServerContext, verified: VerifiedWorkload): Promise<void> {
  if (!verified.replayKey) return;
  const ttl = Math.max(verified.claims.exp - ctx.now() + WORKLOAD_SKEW_SECONDS, 1);
  if (!(await ctx.cache.add(verified.replayKey, 1, ttl))) refuse('workload JWT jti replayed');
}

/**
 * A claim by name: the top-level member of that exact name, else a dotted path into nested objects
 * (`kubernetes.io.namespace` reaches `{"kubernetes.io": {"namespace": …}}`, trying the longest
 * member names first).
 */
function claimAt(payload: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  const parts = name.split('.');
  for (let i = parts.length - 1; i >= 1; i--) {
    const head = parts.slice(0, i).join('.');
    const inner = payload[head];
    if (Object.hasOwn(payload, head) && typeof inner === 'object' && inner !== null && !Array.isArray(inner)) {
      return claimAt(inner as Record<string, unknown>, parts.slice(i).join('.'));
    }
  }
  return undefined;
}
