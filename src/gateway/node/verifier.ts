import { constants, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { VerificationKey } from '../../core/jwt.ts';

/** node:crypto parameters per JWS algorithm (RFC 7518 §3): digest, and how the signature is laid out. */
const ALGORITHMS: Record<string, { digest: string | null; options: (key: KeyObject) => Parameters<typeof cryptoVerify>[2] }> = {
  ES256: { digest: 'sha256', options: (key) => ({ key, dsaEncoding: 'ieee-p1363' }) },
  ES384: { digest: 'sha384', options: (key) => ({ key, dsaEncoding: 'ieee-p1363' }) },
  RS256: { digest: 'sha256', options: (key) => ({ key, padding: constants.RSA_PKCS1_PADDING }) },
  PS256: { digest: 'sha256', options: (key) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }) },
  EdDSA: { digest: null, options: (key) => key },
};

/**
 * Verifies with node:crypto, which is 2–6× cheaper than WebCrypto through jose for the same key
 * (docs/benchmarks.md); the callback form runs on libuv's thread pool. Undefined for an algorithm
 * it does not know, and jose verifies those.
 */
export function nodeVerifier(jwk: JWK, alg: string): VerificationKey['verify'] {
  const algorithm = ALGORITHMS[alg];
  if (!algorithm) return undefined;
  const key = createPublicKey({ key: jwk as never, format: 'jwk' });
  const options = algorithm.options(key);
  return (input, signature) =>
    new Promise<boolean>((resolve, reject) =>
      cryptoVerify(algorithm.digest, input, options, signature, (error, ok) => (error ? reject(error) : resolve(ok))),
    );
}
