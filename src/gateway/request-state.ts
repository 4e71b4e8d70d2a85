import { base64url } from '../core/encoding.ts';
import type { PendingApproval } from './approvals.ts';

/**
 * The 2026-07-28 `requestState` of a call held for approval: opaque to the client, which echoes it
 * byte for byte in its retry. It names the transaction (id, approval page, expiry) and carries an
 * HMAC-SHA256 over that and the caller (route, sub, client), so a client can neither point its
 * retry at another transaction nor use someone else's state. The key is derived from the
 * gateway's client secret: every gateway with the same `approvals` client accepts the others'
 * states, and a secret rotation retires them.
 */

/** What marks a state as the gateway's: a state without it belongs to the upstream and is passed on. */
export const STATE_PREFIX = 'mgw1.';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function fromBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    return Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (ch) => ch.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** The caller a state is bound to. */
export type StateBinding = readonly [route: string, sub: string, clientId: string];

export class RequestStates {
  private key: Promise<CryptoKey> | undefined;

  constructor(private readonly secret: string) {}

  private macKey(): Promise<CryptoKey> {
    this.key ??= (async () => {
      const root = await crypto.subtle.importKey('raw', encoder.encode(this.secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      // A key of its own, not the client secret itself: HMAC as the PRF of a one-step derivation.
      const derived = await crypto.subtle.sign('HMAC', root, encoder.encode('mandate gateway requestState v1'));
      return crypto.subtle.importKey('raw', derived, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    })();
    return this.key;
  }

  private static signed(binding: StateBinding, payload: string): Uint8Array<ArrayBuffer> {
    return encoder.encode(JSON.stringify([...binding, payload]));
  }

  async seal(binding: StateBinding, pending: PendingApproval): Promise<string> {
    const payload = base64url(encoder.encode(JSON.stringify({ t: pending.id, u: pending.url, e: pending.expiresAt })));
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await this.macKey(), RequestStates.signed(binding, payload)));
    return `${STATE_PREFIX}${payload}.${base64url(mac)}`;
  }

  /**
   * The transaction a state names: undefined when it is not the gateway's (no prefix), `invalid`
   * when it claims to be but its MAC or shape is wrong (tampered, or another caller's).
   */
  async open(binding: StateBinding, state: string): Promise<PendingApproval | 'invalid' | undefined> {
    if (!state.startsWith(STATE_PREFIX)) return undefined;
    const [payload, mac, ...rest] = state.slice(STATE_PREFIX.length).split('.');
    const macBytes = mac === undefined ? undefined : fromBase64url(mac);
    if (payload === undefined || !macBytes || rest.length > 0) return 'invalid';
    const valid = await crypto.subtle.verify('HMAC', await this.macKey(), macBytes as Uint8Array<ArrayBuffer>, RequestStates.signed(binding, payload));
    if (!valid) return 'invalid';
    try {
      const fields = JSON.parse(decoder.decode(fromBase64url(payload))) as { t?: unknown; u?: unknown; e?: unknown };
      if (typeof fields.t === 'string' && typeof fields.u === 'string' && typeof fields.e === 'number') return { id: fields.t, url: fields.u, expiresAt: fields.e };
    } catch {
      // Signed by us yet unreadable: cannot happen unless the key leaked; refused like a forgery.
    }
    return 'invalid';
  }
}
