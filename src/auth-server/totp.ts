import type { ServerContext } from './context.ts';

/**
 * TOTP (RFC 6238) as an optional second factor (docs/high-risk-actions.md). Placeholder until
 * enrolment lands: nobody is enrolled, no code verifies.
 */
export async function totpEnrolled(_ctx: ServerContext, _sub: string): Promise<boolean> {
  return false;
}

/** Whether `code` is the user's current one-time code (and not one already used). */
export async function verifyTotp(_ctx: ServerContext, _sub: string, _code: string): Promise<boolean> {
  return false;
}
