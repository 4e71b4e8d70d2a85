import { createHash } from 'node:crypto';

/**
 * SHA-256 of a high-entropy secret (client secret, code, refresh token, registration token),
 * base64url: how they are stored and compared. The same value as `sha256()` in src/core, computed
 * synchronously by node:crypto, which is ~30× cheaper per call than WebCrypto on the token path.
 */
export function hashSecret(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}
