import { sha256 } from '../core/encoding.ts';
import type { Principal } from './types.ts';

/**
 * Approvals of high-risk tool calls (issue 14), the gateway's side: which transaction a call that is
 * retried belongs to. A client that knows nothing of approvals just makes the same call again once
 * the user has approved; the gateway recognizes it by the route, the caller (sub, client, actor
 * chain), the tool and the hash of the bound arguments, remembered for the transaction's lifetime.
 */

/** The transaction a held call waits for: what the gateway needs to ask the AS and to answer again. */
export interface PendingApproval {
  /** The transaction id at the authorization server (also the elicitation id). */
  id: string;
  /** The approval page. */
  url: string;
  /** When the transaction expires, epoch seconds. */
  expiresAt: number;
}

/** Where pending approvals are remembered: one process, or Redis shared by every gateway. */
export interface ApprovalStore {
  /**
   * Remembers `pending` for the call unless one is already remembered (two identical calls at
   * once both created a transaction): the first one kept wins, and is returned, so both callers
   * are sent to the same approval page.
   */
  remember(key: string, pending: PendingApproval, ttlMs: number): PendingApproval | Promise<PendingApproval>;
  recall(key: string): PendingApproval | undefined | Promise<PendingApproval | undefined>;
  forget(key: string): void | Promise<void>;
  /**
   * Marks the approval `transactionId` used, for `ttlMs` (the remaining life of the token that
   * carries it, RFC 9396 `authorization_details`): true for the first claim only — of two
   * gateways sharing the store, exactly one gets true ("first use wins").
   */
  claim(transactionId: string, ttlMs: number): boolean | Promise<boolean>;
  /** Undoes a claim whose use the AS never recorded (it could not be reached): the call was not made. */
  release(transactionId: string): void | Promise<void>;
}

/** Thrown when the shared store cannot answer: the call is then refused (503), never forwarded. */
export class ApprovalStoreUnavailable extends Error {
  constructor(cause: unknown) {
    super(`approval store unavailable: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'ApprovalStoreUnavailable';
  }
}

/** One process's pending approvals (a gateway without REDIS_URL). Bounded; entries lapse with their TTL. */
export class ApprovalMemory implements ApprovalStore {
  private readonly entries = new Map<string, { pending: PendingApproval; until: number }>();
  /** Transaction ids used through a token, until the token expires. Not bounded by dropping: an id dropped early could be used again. */
  private readonly used = new Map<string, number>();

  constructor(private readonly maxEntries = 100_000) {}

  remember(key: string, pending: PendingApproval, ttlMs: number): PendingApproval {
    const kept = this.recall(key);
    if (kept) return kept;
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, { pending: { ...pending }, until: Date.now() + ttlMs });
    return { ...pending };
  }

  recall(key: string): PendingApproval | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return { ...entry.pending };
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  claim(transactionId: string, ttlMs: number): boolean {
    const now = Date.now();
    const until = this.used.get(transactionId);
    if (until !== undefined && until > now) return false;
    // Lapsed marks are swept as new ones come: the map holds only the tokens still alive.
    if (this.used.size >= 1024) for (const [id, end] of this.used) if (end <= now) this.used.delete(id);
    this.used.set(transactionId, now + Math.max(1, ttlMs));
    return true;
  }

  release(transactionId: string): void {
    this.used.delete(transactionId);
  }
}

/**
 * The key a retried call is recognized by: a hash, so the store holds neither who called nor what.
 * The chain is part of it: the same user's call through another agent is another action.
 */
export function retryKey(route: string, principal: Principal, tool: string, argumentsHash: string): Promise<string> {
  const chain = principal.actors.map((actor) => [actor.sub, actor.client_id ?? '']);
  return sha256(JSON.stringify([route, principal.sub, principal.clientId ?? '', chain, tool, argumentsHash]));
}

const MAX_SUMMARY = 200;
const MAX_VALUE = 80;
/** As `SUMMARY_PLACEHOLDER` in src/config/gateway-schema.ts, which refuses a placeholder of an unbound argument. */
const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_-]*)\}/g;

function cut(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

/**
 * Characters a person cannot see or that reorder what they see: controls, format characters (bidi
 * overrides, zero-width), line separators, lone surrogates, and the other default-ignorable code
 * points (variation selectors, fillers).
 */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Default_Ignorable_Code_Point}]/gu;

/**
 * Shows each hidden character as `\u{…}`: deleting it would make `"\u200BBob"` read as "Bob",
 * which is not the string the approval binds.
 */
export function revealHidden(text: string): string {
  return text.replace(HIDDEN, (char) => `\\u{${char.codePointAt(0)!.toString(16).toUpperCase()}}`);
}

/**
 * An argument as the summary shows it: line breaks and other white space become one space, and
 * every hidden character is shown as `\u{…}`, so a value can neither reorder nor hide part of what
 * the user reads; cut short.
 */
function shown(value: unknown): string {
  const text = typeof value === 'string' ? value : value === undefined ? '(none)' : JSON.stringify(value);
  return cut(revealHidden(text.replace(/[\t\n\v\f\r\p{Zl}\p{Zp}]+/gu, ' ')).replace(/ +/g, ' ').trim(), MAX_VALUE);
}

/**
 * The bound arguments as the approval page shows them: the same values, with every hidden
 * character of a string or a name, at any depth, shown as `\u{…}` (the AS refuses hidden characters).
 * The hash is of the arguments themselves, not of this.
 */
export function displayDetails(value: unknown): unknown {
  if (typeof value === 'string') return revealHidden(value);
  if (Array.isArray(value)) return value.map(displayDetails);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([name, item]) => [revealHidden(name), displayDetails(item)]));
  return value;
}

/**
 * The human summary sent with the transaction (the AS shows it on the approval page, escaped):
 * the tool's template with `{arg}` replaced by the argument, or "Call <tool> with a=…, b=…" over
 * the bound arguments. At most 200 characters (the AS's limit).
 *
 * @example
 * renderSummary('Transfer {amount} EUR to {to}', 'transfer', { amount: 250, to: 'Bob' }, {}) // 'Transfer 250 EUR to Bob'
 */
export function renderSummary(template: string | undefined, tool: string, args: Record<string, unknown>, bound: Record<string, unknown>): string {
  if (template) return cut(template.replace(PLACEHOLDER, (_, name: string) => shown(Object.hasOwn(args, name) ? args[name] : undefined)), MAX_SUMMARY);
  const entries = Object.entries(bound).map(([name, value]) => `${shown(name)}=${shown(value)}`);
  return cut(`Call ${shown(tool)}${entries.length > 0 ? ` with ${entries.join(', ')}` : ''}`, MAX_SUMMARY);
}
