/**
 * DPoP at a protected resource (RFC 9449 §7): the `Authorization: DPoP` scheme, the proof checks
 * of §4.3 against the route's public URL, `ath` and the token's `cnf.jkt` (§7.1, §6.1), proof `jti`
 * single use (§11.1), resource server nonces (§9), the MCP profile's `content_digest` (SEP-1932)
 * and the challenges (§7.1, §7.2). Shared by the gateway's protection filter and the resource
 * server helper. Runtime-neutral.
 */
import { DpopError, DpopNonces, generateDpopKey, verifyDpopProof, type DpopKey } from '../core/dpop.ts';
import type { RouteDpopConfig } from '../config/gateway-schema.ts';
import type { TokenClaims } from './token-validator.ts';

export type AuthScheme = 'Bearer' | 'DPoP';

/** RFC 6750 §2.1 b64token / RFC 9449 §7.1 token68, after the scheme (case-insensitive). */
const CREDENTIAL = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** `Authorization: Bearer <t>` or `Authorization: DPoP <t>`; undefined for anything else. */
export function parseCredential(header: string): { scheme: AuthScheme; token: string } | undefined {
  const match = CREDENTIAL.exec(header);
  if (!match) return undefined;
  return { scheme: match[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: match[2]! };
}

/** The key a token is bound to (RFC 9449 §6.1 `cnf.jkt`), if any. */
export function boundJkt(claims: TokenClaims): string | undefined {
  const cnf = claims.cnf as { jkt?: unknown } | undefined;
  return cnf && typeof cnf === 'object' && typeof cnf.jkt === 'string' ? cnf.jkt : undefined;
}

/** The replay store could not answer: the request is refused (503), never let through. */
export class DpopReplayUnavailable extends Error {
  override name = 'DpopReplayUnavailable';
}

/**
 * Proof `jti`s seen (RFC 9449 §11.1). `claim` is set-if-absent: true the first time a key is seen
 * within `ttlSeconds`, false after. Throws DpopReplayUnavailable when it cannot tell.
 */
export interface DpopReplayStore {
  claim(key: string, ttlSeconds: number): Promise<boolean>;
}

/**
 * One process's (or one Worker isolate's) memory of proof `jti`s, bounded. Entries are kept in
 * insertion order and expired ones are dropped from the oldest end as new ones arrive (amortised
 * constant time: a route's proofs share one lifetime, so the oldest entry expires first). When the
 * memory is full of live entries it refuses (fail closed) rather than forget one that could then be
 * replayed; and one key (`dpop:<jkt>:…`, one bound token's holder) may hold at most `maxPerKey`
 * live entries, so a single caller flooding proofs is refused alone instead of filling the memory
 * for everyone.
 */
export class MemoryDpopReplay implements DpopReplayStore {
  private readonly seen = new Map<string, { expires: number; owner: string }>();
  private readonly perOwner = new Map<string, number>();
  private readonly maxPerKey: number;

  constructor(
    private readonly maxEntries = 1_000_000,
    maxPerKey?: number,
  ) {
    this.maxPerKey = maxPerKey ?? Math.max(1, Math.floor(maxEntries / 10));
  }

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    const now = Date.now();
    this.prune(now);
    const known = this.seen.get(key);
    if (known !== undefined && known.expires > now) return false;
    if (known !== undefined) this.forget(key, known.owner);
    const owner = ownerOf(key);
    const held = this.perOwner.get(owner) ?? 0;
    if (held >= this.maxPerKey) throw new DpopReplayUnavailable(`one DPoP key holds ${held} live proofs in the replay memory (at most ${this.maxPerKey})`);
    if (this.seen.size >= this.maxEntries) throw new DpopReplayUnavailable(`the DPoP replay memory is full (${this.maxEntries} live proofs)`);
    this.seen.set(key, { expires: now + ttlSeconds * 1000, owner });
    this.perOwner.set(owner, held + 1);
    return true;
  }

  /** Drops expired entries from the oldest end; stops at the first live one. */
  private prune(now: number): void {
    for (const [key, entry] of this.seen) {
      if (entry.expires > now) return;
      this.forget(key, entry.owner);
    }
  }

  private forget(key: string, owner: string): void {
    this.seen.delete(key);
    const held = (this.perOwner.get(owner) ?? 1) - 1;
    if (held > 0) this.perOwner.set(owner, held);
    else this.perOwner.delete(owner);
  }
}

/** The key's owner: `dpop:<jkt>:<hash>` → the thumbprint; any other key is its own owner. */
function ownerOf(key: string): string {
  const parts = key.split(':');
  return parts.length === 3 && parts[0] === 'dpop' ? parts[1]! : key;
}

/** A route's (or a resource server's) DPoP settings, prepared once. Absent when `mode: off`. */
export interface CompiledDpop {
  mode: 'allow' | 'require';
  algorithms: readonly string[];
  maxAgeSeconds: number;
  contentDigest: 'ignore' | 'verify' | 'require';
  nonces?: DpopNonces;
  replay?: DpopReplayStore;
}

export interface DpopCompileOptions {
  /** The key of the stateless nonces (routes with `require_nonce`); without one, a random key of this process. */
  nonceKey?: Uint8Array;
  /** Where proof `jti`s are remembered (`replay: true`); without one, this process's memory. */
  replay?: DpopReplayStore;
}

export function compileDpop(config: RouteDpopConfig | undefined, options: DpopCompileOptions = {}): CompiledDpop | undefined {
  if (!config || config.mode === 'off') return undefined;
  return {
    mode: config.mode,
    algorithms: config.algorithms,
    maxAgeSeconds: config.proof_max_age_seconds,
    contentDigest: config.content_digest,
    nonces: config.require_nonce ? new DpopNonces(options.nonceKey ?? crypto.getRandomValues(new Uint8Array(32)), config.proof_max_age_seconds) : undefined,
    replay: config.replay ? (options.replay ?? new MemoryDpopReplay()) : undefined,
  };
}

/** What a 401/403 challenge says. */
export interface ChallengeParams {
  metadataUrl: string;
  scopes: string[];
  /** The scheme of the refused request; without an error, every scheme the resource accepts is offered. */
  scheme?: AuthScheme;
  error?: string;
  description?: string;
}

/**
 * `WWW-Authenticate` (RFC 6750 §3, RFC 9449 §7.1, RFC 9728 §5.1). Without an error (no
 * credentials), one challenge per accepted scheme with no error (§7.2), Bearer first: the MCP SDK
 * reads `resource_metadata` and `scope` only from a header that starts with `Bearer `. With an
 * error, the challenge of the scheme the request used.
 */
export function challenge(dpop: CompiledDpop | undefined, p: ChallengeParams): string {
  const scope = p.scopes.length > 0 ? `, scope="${[...new Set(p.scopes)].join(' ')}"` : '';
  const error = p.error ? `, error="${p.error}"${p.description ? `, error_description="${p.description.replace(/["\\]/g, '')}"` : ''}` : '';
  const bearer = `Bearer resource_metadata="${p.metadataUrl}"${scope}${error}`;
  const dpopChallenge = () => `DPoP algs="${dpop?.algorithms.join(' ') ?? ''}", resource_metadata="${p.metadataUrl}"${scope}${error}`;
  if (p.error) return p.scheme === 'DPoP' && dpop ? dpopChallenge() : bearer;
  if (!dpop) return bearer;
  return dpop.mode === 'require' ? dpopChallenge() : `${bearer}, ${dpopChallenge()}`;
}

/** A refused DPoP presentation: what to answer (401 or 503) and what to audit. */
export interface DpopRefusal {
  status: 401 | 503;
  /** For the challenge (`invalid_dpop_proof`, `use_dpop_nonce`, `invalid_token`) or the body (`temporarily_unavailable`). */
  error: 'invalid_dpop_proof' | 'use_dpop_nonce' | 'invalid_token' | 'temporarily_unavailable';
  /** The audit rejection: invalid_dpop_proof, use_dpop_nonce, dpop_replay, dpop_binding_mismatch, dpop_replay_unavailable. */
  rejection: string;
  reason: string;
  /** A fresh nonce for `DPoP-Nonce` (use_dpop_nonce). */
  nonce?: string;
}

export interface DpopPresentation {
  /** The `DPoP` request header (several: a list, refused by §4.3 (1)). */
  proofs: string | string[] | undefined;
  method: string;
  /** Our public URL of the request (the route's resource origin + path), never the Host header. */
  url: string;
  token: string;
  claims: TokenClaims;
  /** The raw request body, for `content_digest`. */
  body?: () => Uint8Array | undefined;
  now?: number;
}

/**
 * Checks a `DPoP`-scheme request after its token validated: the proof (§4.3 (1)–(11), `ath`,
 * `content_digest`, `jti` once) and that its key is the one the token is bound to. Returns the
 * thumbprint, or the refusal.
 */
export async function checkDpopPresentation(dpop: CompiledDpop, p: DpopPresentation): Promise<{ ok: true; jkt: string } | ({ ok: false } & DpopRefusal)> {
  const now = p.now ?? Math.floor(Date.now() / 1000);
  let replayed = false;
  let unavailable: Error | undefined;
  const replay = dpop.replay;
  let jkt: string;
  try {
    const proof = await verifyDpopProof(p.proofs, {
      method: p.method,
      url: p.url,
      accessToken: p.token,
      algorithms: dpop.algorithms,
      maxAgeSeconds: dpop.maxAgeSeconds,
      now,
      nonces: dpop.nonces,
      replay: replay
        ? async (key, ttl) => {
            try {
              const fresh = await replay.claim(key, ttl);
              replayed = !fresh;
              return fresh;
            } catch (error) {
              unavailable = error as Error;
              throw error;
            }
          }
        : undefined,
      body: dpop.contentDigest === 'ignore' ? undefined : p.body?.(),
      contentDigest: dpop.contentDigest,
    });
    jkt = proof.jkt;
  } catch (error) {
    if (unavailable) return { ok: false, status: 503, error: 'temporarily_unavailable', rejection: 'dpop_replay_unavailable', reason: unavailable.message };
    if (!(error instanceof DpopError)) throw error;
    if (replayed) return { ok: false, status: 401, error: 'invalid_dpop_proof', rejection: 'dpop_replay', reason: error.reason };
    if (error.code === 'use_dpop_nonce') return { ok: false, status: 401, error: 'use_dpop_nonce', rejection: 'use_dpop_nonce', reason: error.reason, nonce: await dpop.nonces?.issue(now) };
    return { ok: false, status: 401, error: 'invalid_dpop_proof', rejection: 'invalid_dpop_proof', reason: error.reason };
  }
  const bound = boundJkt(p.claims);
  if (bound === undefined) return { ok: false, status: 401, error: 'invalid_token', rejection: 'dpop_binding_mismatch', reason: 'the access token is not DPoP-bound (no cnf.jkt) but was presented with the DPoP scheme' };
  if (bound !== jkt) return { ok: false, status: 401, error: 'invalid_token', rejection: 'dpop_binding_mismatch', reason: "the proof's key is not the key the access token is bound to (cnf.jkt)" };
  return { ok: true, jkt };
}

/** What a DPoP-aware resource adds to its protected resource metadata (RFC 9728 §2, RFC 9449 §7.1). */
export function dpopMetadata(dpop: CompiledDpop | undefined): Record<string, unknown> {
  if (!dpop) return {};
  return { dpop_signing_alg_values_supported: [...dpop.algorithms], ...(dpop.mode === 'require' ? { dpop_bound_access_tokens_required: true } : {}) };
}

/** The gateway's own DPoP key (token mediation, `mediation.dpop`), made or loaded on first use. */
export type DpopKeySource = () => Promise<DpopKey>;

/** A key of this process (Workers: of this isolate), made on first use: the fallback without a key file. */
export function memoryDpopKey(): DpopKeySource {
  let key: Promise<DpopKey> | undefined;
  return () => (key ??= generateDpopKey('ES256'));
}
