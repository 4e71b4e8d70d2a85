import canonicalize from 'canonicalize';
import { sha256 } from './encoding.ts';

/**
 * The canonical hash of one tool call, as a transaction binds it (issue 14): the gateway computes it
 * for the call it holds and for the retried call, the authorization server stores it with the
 * transaction and compares. Both sides must produce the same bytes for the same action whatever
 * the key order or spacing of the JSON a client sent, hence JCS (RFC 8785) before the digest.
 */

/**
 * The arguments an approval binds: only the named ones, those absent left out (an absent argument
 * and one that is present are different actions, and the hash shows it by its keys).
 *
 * @example
 * pickBound({ amount: 250, to: 'bob', memo: 'rent' }, ['amount', 'to']) // { amount: 250, to: 'bob' }
 */
export function pickBound(args: Record<string, unknown>, binds: readonly string[]): Record<string, unknown> {
  // fromEntries defines own properties: an argument named `__proto__` stays an argument.
  return Object.fromEntries(binds.filter((name) => Object.hasOwn(args, name) && args[name] !== undefined).map((name) => [name, args[name]]));
}

/**
 * base64url(SHA-256(JCS({ tool, arguments }))), the arguments restricted to `binds` when given.
 * Throws (from the canonicalizer) for values JSON cannot carry: NaN, Infinity, lone surrogates.
 *
 * @example
 * await actionHash('transfer', { to: 'bob', amount: 250 }) === await actionHash('transfer', { amount: 250, to: 'bob' }) // true
 */
export async function actionHash(tool: string, args: Record<string, unknown>, binds?: readonly string[]): Promise<string> {
  const canonical = canonicalize({ tool, arguments: binds ? pickBound(args, binds) : args });
  if (canonical === undefined) throw new TypeError('actionHash: the action has no JSON form');
  return sha256(canonical);
}
