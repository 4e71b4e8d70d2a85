/**
 * Remembers tokens whose signature and claims were verified, until they expire, so a token seen
 * again skips the signature check (which costs more than everything else on the path). Bounded,
 * oldest first out. Revocation is not cached: callers check it on every use.
 *
 * Looked up by the token's signature (what follows its last `.`), not by the whole token: a map
 * lookup hashes its key, and every request brings the token as a new string, so hashing the ~90
 * characters of an ES256 signature rather than the whole ~600-character token halves the lookup
 * (docs/gateway.md "Performance"). A hit still needs the whole token to be the one stored: a token
 * that only shares the signature (another payload, forged) is a miss and goes to verification.
 */
export class VerifiedTokenCache<T extends { exp?: number }> {
  private readonly entries = new Map<string, { token: string; claims: T }>();

  constructor(private readonly maxEntries = 10_000) {}

  get(token: string, nowSeconds: number): T | undefined {
    const key = keyOf(token);
    const entry = this.entries.get(key);
    if (entry === undefined || entry.token !== token) return undefined;
    const claims = entry.claims;
    if (claims.exp !== undefined && claims.exp <= nowSeconds) {
      this.entries.delete(key);
      return undefined;
    }
    return claims;
  }

  set(token: string, claims: T): void {
    const key = keyOf(token);
    // A new key at the bound: the oldest goes. (A replaced entry keeps its place.)
    if (this.entries.size >= this.maxEntries && !this.entries.has(key)) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, { token, claims });
  }
}

/** The least signature length taken alone: shorter tails (not a JWS) key by the whole token. */
const MIN_SIGNATURE = 32;

/** A token's lookup key: its signature segment when it has one of a signature's length, else the whole token. */
export function keyOf(token: string): string {
  const dot = token.lastIndexOf('.');
  return dot >= 0 && token.length - dot - 1 >= MIN_SIGNATURE ? token.slice(dot + 1) : token;
}
