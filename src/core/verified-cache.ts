/**
 * Remembers tokens whose signature and claims were verified, until they expire, so a token seen
 * again skips the signature check (which costs more than everything else on the path). Keyed by
 * the whole token string; bounded, oldest first out. Revocation is not cached: callers check it
 * on every use.
 */
export class VerifiedTokenCache<T extends { exp?: number }> {
  private readonly entries = new Map<string, T>();

  constructor(private readonly maxEntries = 10_000) {}

  get(token: string, nowSeconds: number): T | undefined {
    const claims = this.entries.get(token);
    if (!claims) return undefined;
    if (claims.exp !== undefined && claims.exp <= nowSeconds) {
      this.entries.delete(token);
      return undefined;
    }
    return claims;
  }

  set(token: string, claims: T): void {
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(token, claims);
  }
}
