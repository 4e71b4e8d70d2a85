import type { JWK } from 'jose';
import { RemoteJwks, type JwksOptions } from './jwks.ts';

/**
 * The authorization servers' signing keys, held outside the routes: a route reload builds new
 * validators but finds the keys the previous build had (issue 11, item 10), so a reload while the
 * AS is down does not turn valid tokens away. Keyed by JWKS URL (or the issuer, when the URL is
 * discovered); `onChange` lets the Node server keep them in a file across restarts.
 */
export class SigningKeys {
  private readonly known: Map<string, JWK[]>;
  private readonly sets = new Map<string, { jwks: RemoteJwks; used: boolean }>();

  constructor(private readonly options: { initial?: Record<string, JWK[]>; onChange?: (keys: Record<string, JWK[]>) => void } = {}) {
    this.known = new Map(Object.entries(options.initial ?? {}));
  }

  /**
   * The key set of `source` (a JWKS URL or an issuer). The same settings get the same set; other
   * settings get a new set, seeded with the keys last seen for `source`.
   */
  jwks(source: string, options: Omit<JwksOptions, 'initial' | 'onKeys'>): RemoteJwks {
    const id = JSON.stringify([source, options.refreshMs, options.minRefreshMs ?? null]);
    let entry = this.sets.get(id);
    if (!entry) {
      const jwks = new RemoteJwks({ ...options, initial: this.known.get(source), onKeys: (keys) => this.remember(source, keys) });
      jwks.start();
      entry = { jwks, used: true };
      this.sets.set(id, entry);
    }
    entry.used = true;
    entry.jwks.retarget(options.jwksUri);
    return entry.jwks;
  }

  /** After a successful build: stops the sets no route asked for since the previous sweep. */
  sweep(): void {
    for (const [id, entry] of this.sets) {
      if (!entry.used) {
        entry.jwks.stop();
        this.sets.delete(id);
      }
      entry.used = false;
    }
  }

  close(): void {
    for (const entry of this.sets.values()) entry.jwks.stop();
    this.sets.clear();
  }

  private remember(source: string, keys: JWK[]): void {
    if (keys.length === 0 || JSON.stringify(this.known.get(source)) === JSON.stringify(keys)) return;
    this.known.set(source, keys);
    this.options.onChange?.(Object.fromEntries(this.known));
  }
}
