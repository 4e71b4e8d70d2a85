/**
 * DPoP proof `jti`s at the edge (RFC 9449 §11.1): the gateway's `DpopReplayStore` in the
 * `GatewayState` Durable Object, so that a proof accepted by one isolate is refused by every other,
 * and still after a restart (the object's storage persists).
 *
 * One object per proof: its name is the replay key `dpop:<jkt>:<base64url SHA-256(jti)>` that
 * `verifyDpopProof` hands over (no raw `jti`). Not one object per key (`jkt`), nor a few shards:
 * a Durable Object runs one request at a time, so a shard would serialise the proofs of every caller
 * hashed to it, and an object per `jkt` those of one client (an agent's parallel calls); either would
 * also hold a growing set to sweep. An object per proof holds one record, is never contended (a
 * proof is presented once, a replay twice), and its alarm deletes it whole at its expiry. The
 * object's input gate makes the read and the write of `claim` atomic, as Redis `SET NX` on Node.
 *
 * Fail closed: an object that cannot be reached or fails makes `claim` throw
 * `DpopReplayUnavailable`, and the gateway answers 503 (`dpop_replay_unavailable`).
 */
import { DpopReplayUnavailable, type DpopReplayStore } from '../dpop.ts';
import { callState, type DurableNamespace, type DurableStorage } from './durable-state.ts';

export type DpopCommand = { op: 'dpop-claim'; ttlMs: number };

/** The object's side: set-if-absent of its one record, kept until `until`. */
export async function dpopCommand(storage: DurableStorage, command: DpopCommand): Promise<Response> {
  if (command.op !== 'dpop-claim' || !(command.ttlMs > 0)) return new Response('bad request', { status: 400 });
  const now = Date.now();
  const until = await storage.get<number>('dpop');
  if (until !== undefined && until > now) return Response.json({ claimed: false });
  const next = now + command.ttlMs;
  await storage.put('kind', 'dpop');
  await storage.put('dpop', next);
  await storage.setAlarm(next);
  return Response.json({ claimed: true });
}

/** The alarm of a `dpop:` object: delete the record at its expiry. */
export async function dpopAlarm(storage: DurableStorage): Promise<void> {
  const until = await storage.get<number>('dpop');
  if (until !== undefined && until > Date.now()) await storage.setAlarm(until);
  else await storage.deleteAll();
}

/** The gateway's `DpopReplayStore` over the `GatewayState` Durable Object (one object per proof). */
export class DurableDpopReplay implements DpopReplayStore {
  constructor(private readonly namespace: DurableNamespace) {}

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    let answer: { claimed?: unknown };
    try {
      answer = (await callState(this.namespace, key, { op: 'dpop-claim', ttlMs: Math.max(1, Math.round(ttlSeconds * 1000)) })) as { claimed?: unknown };
    } catch (error) {
      throw new DpopReplayUnavailable(`the DPoP replay store (Durable Object) cannot answer: ${(error as Error)?.message ?? String(error)}`);
    }
    if (typeof answer?.claimed !== 'boolean') throw new DpopReplayUnavailable('the DPoP replay store (Durable Object) answered without a claim');
    return answer.claimed;
  }
}
