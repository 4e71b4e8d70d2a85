/**
 * Sealing of the gateway's browser cookies (issue 15): AES-256-GCM with a key derived (HKDF-SHA256)
 * from the route's session secret, so a cookie can be neither read nor forged nor moved to another
 * route or purpose (the purpose and route are the additional authenticated data). WebCrypto only:
 * the web route also runs outside Node.
 */
const encoder = new TextEncoder();

function toBase64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** A random identifier of `bytes` bytes, base64url (256 bits by default: unguessable). */
export function randomId(bytes = 32): string {
  return toBase64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** SHA-256 of a secret value, base64url: how session ids and states are stored. */
export async function digest(value: string): Promise<string> {
  return toBase64url(new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(value))));
}

export class CookieSealer {
  private readonly key: Promise<CryptoKey>;

  /** `secret`: at least 32 bytes of key material (a configured secret or a generated key). */
  constructor(secret: Uint8Array, private readonly context: string) {
    this.key = crypto.subtle
      .importKey('raw', secret as BufferSource, 'HKDF', false, ['deriveKey'])
      .then((base) =>
        crypto.subtle.deriveKey(
          { name: 'HKDF', hash: 'SHA-256', salt: encoder.encode('mandate gateway web cookie v1'), info: encoder.encode(context) },
          base,
          { name: 'AES-GCM', length: 256 },
          false,
          ['encrypt', 'decrypt'],
        ),
      );
  }

  /** `v1.<iv>.<ciphertext+tag>`; `purpose` is authenticated, so a sign-in cookie is no session cookie. */
  async seal(value: string, purpose: string): Promise<string> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: encoder.encode(purpose) }, await this.key, encoder.encode(value));
    return `v1.${toBase64url(iv)}.${toBase64url(new Uint8Array(sealed))}`;
  }

  /** The value, or undefined for anything not sealed by this key for this purpose. */
  async unseal(cookie: string | undefined, purpose: string): Promise<string | undefined> {
    if (!cookie || cookie.length > 4096) return undefined;
    const [version, ivText, bodyText, extra] = cookie.split('.');
    if (version !== 'v1' || !ivText || !bodyText || extra !== undefined) return undefined;
    const iv = fromBase64url(ivText);
    const body = fromBase64url(bodyText);
    if (!iv || iv.length !== 12 || !body) return undefined;
    try {
      const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: iv as BufferSource, additionalData: encoder.encode(purpose) }, await this.key, body as BufferSource);
      return new TextDecoder().decode(plain);
    } catch {
      return undefined;
    }
  }
}

/** Decodes a configured secret: base64/base64url of at least 32 bytes, or else its UTF-8 bytes (at least 32). */
export function secretBytes(value: string): Uint8Array {
  const decoded = fromBase64url(value.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''));
  if (decoded && decoded.length >= 32) return decoded;
  const raw = encoder.encode(value);
  if (raw.length < 32) throw new Error('the session secret must be at least 32 bytes (e.g. `openssl rand -base64 32`)');
  return raw;
}
