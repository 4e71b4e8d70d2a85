/**
 * `MANDATE_EDGE_CACHE_KEY` (a secret binding, base64url of at least 32 random bytes): the key that
 * authenticates what this Worker keeps in stores others can write — the verified-token entries in
 * KV (`verified-tokens.ts`) and the key set in the Cache API (`key-set-cache.ts`). KV is writable by
 * any API token or Worker with edit rights on the namespace, and `caches.default` by every Worker of
 * the zone: without a MAC, whoever writes there could plant a "verified" identity or an AS key set.
 * HMAC-SHA-256 (WebCrypto); each use names its purpose as the first element of the MAC'd message,
 * so a MAC made for one use never verifies for another. Without the secret both caches are off.
 */

const encoder = new TextEncoder();

function toBase64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64url(text: string): Uint8Array {
  return Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
}

/** The least length of the secret, in bytes (HMAC-SHA-256's block of security). */
export const EDGE_CACHE_KEY_MIN_BYTES = 32;

/** The binding's bytes; undefined when absent; throws (a config error) when set but not ≥ 32 bytes of base64url. */
export function parseEdgeCacheKey(raw: unknown): Uint8Array | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]+={0,2}$/.test(raw.trim())) throw new Error('MANDATE_EDGE_CACHE_KEY must be base64url (at least 32 random bytes, e.g. `openssl rand -base64 32 | tr "+/" "-_"`)');
  const bytes = fromBase64url(raw.trim().replace(/=+$/, ''));
  if (bytes.length < EDGE_CACHE_KEY_MIN_BYTES) throw new Error(`MANDATE_EDGE_CACHE_KEY must hold at least ${EDGE_CACHE_KEY_MIN_BYTES} bytes; it holds ${bytes.length}`);
  return bytes;
}

/** HMAC-SHA-256 with the edge cache key over the JSON of a list of parts; the key is imported on first use. */
export class EdgeCacheMac {
  private key: Promise<CryptoKey> | undefined;

  constructor(private readonly secret: Uint8Array) {}

  private cryptoKey(): Promise<CryptoKey> {
    return (this.key ??= crypto.subtle.importKey('raw', this.secret as BufferSource, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']));
  }

  /** base64url(HMAC(key, JSON(parts))). */
  async sign(parts: unknown[]): Promise<string> {
    return toBase64url(new Uint8Array(await crypto.subtle.sign('HMAC', await this.cryptoKey(), encoder.encode(JSON.stringify(parts)))));
  }

  /** Whether `mac` is the MAC of `parts` (WebCrypto's verify: constant time). */
  async verify(parts: unknown[], mac: unknown): Promise<boolean> {
    if (typeof mac !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(mac)) return false;
    return crypto.subtle.verify('HMAC', await this.cryptoKey(), fromBase64url(mac) as BufferSource, encoder.encode(JSON.stringify(parts)));
  }
}
