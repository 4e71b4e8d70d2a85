import type { ServerContext } from './context.ts';

/**
 * A pending device authorization (RFC 8628): created at the device authorization endpoint, kept in
 * the short-lived cache (memory or Redis) under the hash of its device code, approved or denied by
 * the user on the verification page, and redeemed once at the token endpoint.
 */
export interface DeviceAuthorization {
  clientId: string;
  scopes: string[];
  resource: string;
  acr?: string;
  userCode: string;
  status: 'pending' | 'approved' | 'denied';
  grantId?: string;
  sub?: string;
  /**
   * When the device last polled, in milliseconds (whole seconds would let two polls a few ms apart
   * across a second boundary pass as spaced), to tell it to slow down (RFC 8628 §3.5).
   */
  lastPollMs?: number;
  interval: number;
  expiresAt: number;
}

export const deviceKey = (codeHash: string) => `device:${codeHash}`;
export const userCodeKey = (userCode: string) => `device_user:${userCode}`;

/** RFC 8628 §6.1: 8 characters from 20 consonants (no vowels, no look-alikes): ~34 bits. */
const ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

export function newUserCode(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const chars = [...bytes].map((b) => ALPHABET[b % ALPHABET.length]);
  return `${chars.slice(0, 4).join('')}-${chars.slice(4).join('')}`;
}

/** What a person types, normalised: case and dashes and spaces do not matter (RFC 8628 §6.1). */
export function normaliseUserCode(input: string): string {
  const letters = input.toUpperCase().replace(/[^A-Z]/g, '');
  return letters.length === 8 ? `${letters.slice(0, 4)}-${letters.slice(4)}` : letters;
}

/**
 * Records the person's decision. A compare-and-set, retried: a poll that lands in between (it
 * updates `lastPollMs`) cannot write its stale `pending` copy over the decision, nor this over it.
 */
export async function settleDevice(ctx: ServerContext, codeHash: string, outcome: Pick<DeviceAuthorization, 'status' | 'grantId' | 'sub'>): Promise<boolean> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const record = await ctx.cache.get<DeviceAuthorization>(deviceKey(codeHash));
    if (!record || record.status !== 'pending') return false;
    const ttl = Math.max(1, record.expiresAt - ctx.now());
    if (await ctx.cache.swap(deviceKey(codeHash), record, { ...record, ...outcome }, ttl)) {
      await ctx.cache.delete(userCodeKey(record.userCode));
      return true;
    }
  }
  return false;
}
