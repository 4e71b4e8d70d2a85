import { importJWK, type JWK } from 'jose';
import type { VerificationKey, VerificationKeySource } from '../core/jwt.ts';

/**
 * The authorization server's public keys, fetched from its JWKS and kept: tokens are verified
 * locally, with no call per request (DESIGN §6). The set is refreshed on a timer and when a token
 * names an unknown `kid` (a rotation), at most every `minRefreshMs` so that made-up kids cannot
 * make the gateway hammer the AS. While the AS is unreachable the cached set keeps serving.
 */
export interface JwksOptions {
  /** The JWKS URL, or a function that finds it (AS metadata discovery) on first use. */
  jwksUri: string | (() => Promise<string>);
  refreshMs: number;
  minRefreshMs?: number;
  fetch?: typeof fetch;
  /** A faster verifier for this runtime (node:crypto on Node); jose's WebCrypto otherwise. */
  createVerifier?: (jwk: JWK, alg: string) => VerificationKey['verify'];
  onError?: (error: Error) => void;
}

/** JWS algorithm a JWK is for, when the JWK does not say (RFC 7518 §3.1). */
function defaultAlg(jwk: JWK): string | undefined {
  if (jwk.kty === 'EC') return ({ 'P-256': 'ES256', 'P-384': 'ES384' } as Record<string, string>)[jwk.crv ?? ''];
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  return undefined;
}

export class RemoteJwks implements VerificationKeySource {
  private keys = new Map<string, VerificationKey>();
  private loaded: Promise<void> | undefined;
  private lastFetch = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly options: JwksOptions) {}

  async byKid(kid: string): Promise<VerificationKey | undefined> {
    if (!this.loaded) this.loaded = this.refresh();
    await this.loaded;
    const key = this.keys.get(kid);
    if (key) return key;
    // An unknown kid may be a key the AS has just started publishing.
    if (Date.now() - this.lastFetch < (this.options.minRefreshMs ?? 10_000)) return undefined;
    await this.refresh();
    return this.keys.get(kid);
  }

  /** Fetches the set; on failure the previous set stays (and the error is reported). */
  async refresh(): Promise<void> {
    this.lastFetch = Date.now();
    try {
      const uri = typeof this.options.jwksUri === 'string' ? this.options.jwksUri : await this.options.jwksUri();
      const response = await (this.options.fetch ?? fetch)(uri, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5_000) });
      if (!response.ok) throw new Error(`JWKS ${uri} answered ${response.status}`);
      const body = (await response.json()) as { keys?: JWK[] };
      if (!Array.isArray(body.keys)) throw new Error(`JWKS ${uri} has no keys array`);
      const next = new Map<string, VerificationKey>();
      for (const jwk of body.keys) {
        const alg = jwk.alg ?? defaultAlg(jwk);
        // Only public signing keys with an id: a symmetric or private key in a JWKS is a misconfiguration.
        if (!jwk.kid || !alg || (jwk.use && jwk.use !== 'sig') || jwk.kty === 'oct' || 'd' in jwk) continue;
        try {
          const publicKey = (await importJWK(jwk, alg)) as CryptoKey;
          next.set(jwk.kid, { kid: jwk.kid, alg, publicKey, verify: this.options.createVerifier?.(jwk, alg) });
        } catch {
          // A key this runtime cannot use is skipped, not fatal for the others.
        }
      }
      this.keys = next;
    } catch (error) {
      this.options.onError?.(error as Error);
    }
  }

  start(): void {
    this.timer ??= setInterval(() => void this.refresh(), this.options.refreshMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
