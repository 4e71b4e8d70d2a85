import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { AuthServerConfig } from '../config/schema.ts';
import { totpKeyMaterialFor } from './bootstrap.ts';

/**
 * TOTP secrets at rest: AES-256-GCM (NIST SP 800-38D) under a key derived (HKDF-SHA256, RFC 5869)
 * from `totp.key_env` or the generated `secrets/totp.key`. Unlike client secrets, a TOTP secret
 * cannot be stored as a hash: the server must compute codes from it. The user's `sub` is the
 * additional authenticated data, so a sealed secret copied onto another user's row does not open.
 *
 * Format: `v1.<96-bit IV>.<ciphertext and 128-bit tag>`, base64url.
 */
const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const keys = new WeakMap<AuthServerConfig, Buffer>();

/** The AES key of this configuration, read (or generated) once. */
export function totpSealKey(config: AuthServerConfig): Buffer {
  let key = keys.get(config);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', totpKeyMaterialFor(config), Buffer.alloc(0), 'mandate totp secret v1', 32));
    keys.set(config, key);
  }
  return key;
}

const aad = (sub: string) => Buffer.from(`totp:${sub}`, 'utf8');

export function sealTotpSecret(key: Buffer, sub: string, secret: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(sub));
  const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${VERSION}.${iv.toString('base64url')}.${sealed.toString('base64url')}`;
}

/** The secret, or undefined when it does not open (another key, another user's row, tampering). */
export function openTotpSecret(key: Buffer, sub: string, sealed: string): string | undefined {
  const [version, ivText, bodyText] = sealed.split('.');
  if (version !== VERSION || !ivText || !bodyText) return undefined;
  const iv = Buffer.from(ivText, 'base64url');
  const body = Buffer.from(bodyText, 'base64url');
  if (iv.length !== IV_BYTES || body.length <= TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(sub));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
