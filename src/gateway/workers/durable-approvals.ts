/**
 * Calls held for approval at the edge (issue 16): the gateway's `ApprovalStore` in the
 * `GatewayState` Durable Object, so that a call held through one isolate is recognized when it is
 * retried through another, and an approval carried in a token is claimed once among all isolates.
 *
 * One object per record: `approval:<retry key>` (the retry key is already a hash: the object's name
 * says neither who called nor what) holds the pending transaction until it expires;
 * `approval:used:<transaction id>` marks an approval used for the token's remaining life. A Durable
 * Object runs one request at a time and its storage reads and writes are atomic between them, so
 * `remember` keeps the first transaction and `claim` is true once (as Redis `SET NX` on Node). Which
 * retry spends the approval is still decided by the AS (`/use`). Each record is deleted by the
 * object's alarm at its expiry, and treated as absent when read after it.
 *
 * Fail closed: an object that cannot be reached or fails makes every method throw
 * `ApprovalStoreUnavailable`, and the gateway answers 503 (`approval_unavailable`).
 */
import { ApprovalStoreUnavailable, type ApprovalStore, type PendingApproval } from '../approvals.ts';
import { callState, type DurableNamespace, type DurableStorage } from './durable-state.ts';

export type ApprovalCommand =
  | { op: 'approval-remember'; pending: PendingApproval; ttlMs: number }
  | { op: 'approval-recall' }
  | { op: 'approval-forget' }
  | { op: 'approval-claim'; ttlMs: number }
  | { op: 'approval-release' };

interface ApprovalRecord {
  pending?: PendingApproval;
  until: number;
}

const isPending = (value: unknown): value is PendingApproval =>
  typeof value === 'object' && value !== null && typeof (value as PendingApproval).id === 'string' && typeof (value as PendingApproval).url === 'string' && typeof (value as PendingApproval).expiresAt === 'number';

/** The object's side: one record (a pending approval, or a used mark) with its expiry. */
export async function approvalCommand(storage: DurableStorage, command: ApprovalCommand): Promise<Response> {
  const now = Date.now();
  const stored = await storage.get<ApprovalRecord>('approval');
  const live = stored && stored.until > now ? stored : undefined;
  const keep = async (record: ApprovalRecord) => {
    await storage.put('kind', 'approval');
    await storage.put('approval', record);
    await storage.setAlarm(record.until);
  };
  switch (command.op) {
    case 'approval-remember': {
      if (!isPending(command.pending) || !(command.ttlMs > 0)) return new Response('bad request', { status: 400 });
      if (live?.pending) return Response.json({ pending: live.pending });
      await keep({ pending: command.pending, until: now + command.ttlMs });
      return Response.json({ pending: command.pending });
    }
    case 'approval-recall':
      return Response.json({ pending: live?.pending ?? null });
    case 'approval-claim': {
      if (!(command.ttlMs > 0)) return new Response('bad request', { status: 400 });
      if (live) return Response.json({ claimed: false });
      await keep({ until: now + Math.max(1, command.ttlMs) });
      return Response.json({ claimed: true });
    }
    case 'approval-forget':
    case 'approval-release':
      await storage.deleteAll();
      return Response.json({});
    default:
      return new Response('bad request', { status: 400 });
  }
}

/** The alarm of an `approval:` object: delete the record at its expiry (or wake again if renewed). */
export async function approvalAlarm(storage: DurableStorage): Promise<void> {
  const stored = await storage.get<ApprovalRecord>('approval');
  if (stored && stored.until > Date.now()) await storage.setAlarm(stored.until);
  else await storage.deleteAll();
}

/** The gateway's `ApprovalStore` over the `GatewayState` Durable Object (one object per record). */
export class DurableApprovals implements ApprovalStore {
  constructor(private readonly namespace: DurableNamespace) {}

  private async send(name: string, command: ApprovalCommand): Promise<Record<string, unknown>> {
    try {
      return (await callState(this.namespace, name, command)) as Record<string, unknown>;
    } catch (error) {
      throw new ApprovalStoreUnavailable(error);
    }
  }

  async remember(key: string, pending: PendingApproval, ttlMs: number): Promise<PendingApproval> {
    const answer = await this.send(`approval:${key}`, { op: 'approval-remember', pending, ttlMs: Math.max(1, Math.round(ttlMs)) });
    if (!isPending(answer.pending)) throw new ApprovalStoreUnavailable(new Error('the Durable Object answered without the pending approval'));
    return answer.pending;
  }

  async recall(key: string): Promise<PendingApproval | undefined> {
    const answer = await this.send(`approval:${key}`, { op: 'approval-recall' });
    return isPending(answer.pending) ? answer.pending : undefined;
  }

  async forget(key: string): Promise<void> {
    await this.send(`approval:${key}`, { op: 'approval-forget' });
  }

  async claim(transactionId: string, ttlMs: number): Promise<boolean> {
    const answer = await this.send(`approval:used:${transactionId}`, { op: 'approval-claim', ttlMs: Math.max(1, Math.round(ttlMs)) });
    if (typeof answer.claimed !== 'boolean') throw new ApprovalStoreUnavailable(new Error('the Durable Object answered without a claim'));
    return answer.claimed;
  }

  async release(transactionId: string): Promise<void> {
    await this.send(`approval:used:${transactionId}`, { op: 'approval-release' });
  }
}
