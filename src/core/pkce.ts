import { OAuthError } from './errors.ts';
import { constantTimeEqual, sha256 } from './encoding.ts';

/** RFC 7636 §4.1: 43–128 characters from the unreserved set. Challenges have the same alphabet. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

/** Validates the PKCE parameters of an authorization request. Only S256 is accepted (OAuth 2.1 §4.1.1). */
export function checkCodeChallenge(challenge: string | undefined, method: string | undefined): string {
  if (!challenge) throw new OAuthError('invalid_request', 'code_challenge is required (PKCE)');
  if (method !== 'S256') {
    throw new OAuthError('invalid_request', 'code_challenge_method must be S256', {
      reason: `code_challenge_method=${method ?? '(missing)'}`,
    });
  }
  // An S256 challenge is the base64url SHA-256 digest: exactly 43 characters.
  if (!/^[A-Za-z0-9\-_]{43}$/.test(challenge)) {
    throw new OAuthError('invalid_request', 'code_challenge is not a valid S256 challenge');
  }
  return challenge;
}

/** Checks a code_verifier against the stored S256 challenge. */
export async function verifyCodeVerifier(verifier: string | undefined, challenge: string): Promise<void> {
  if (!verifier) throw new OAuthError('invalid_request', 'code_verifier is required');
  if (!VERIFIER.test(verifier)) throw new OAuthError('invalid_grant', 'code_verifier is malformed');
  if (!constantTimeEqual(await sha256(verifier), challenge)) {
    throw new OAuthError('invalid_grant', 'PKCE verification failed', { reason: 'code_verifier does not match code_challenge' });
  }
}
