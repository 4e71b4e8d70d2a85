import type { Redis } from 'ioredis';
import { ApprovalStoreUnavailable, type ApprovalStore, type PendingApproval } from '../approvals.ts';

/**
 * Pending approvals shared by every gateway with the same Redis and key prefix: a call held by one
 * instance is recognized when it is retried through another. The keys are already hashes (the
 * retry key); the TTL is the transaction's lifetime. Which retry may spend the approval is decided
 * by the AS (`/use`, atomic), not here. An approval carried in a token (RFC 9396) is claimed here
 * first: `SET NX` with the token's remaining life, keyed by transaction id, so of the gateways
 * sharing this Redis exactly one goes on with it. Redis errors are `ApprovalStoreUnavailable`: fail closed.
 */
export class RedisApprovals implements ApprovalStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(key: string): string {
    return `${this.prefix}:approval:${key}`;
  }

  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (error) {
      throw new ApprovalStoreUnavailable(error);
    }
  }

  async remember(key: string, pending: PendingApproval, ttlMs: number): Promise<PendingApproval> {
    // NX: of two gateways (or requests) holding the same call at once, the first one stored wins.
    const stored = await this.run(() => this.redis.set(this.key(key), JSON.stringify(pending), 'PX', Math.max(1, Math.round(ttlMs)), 'NX'));
    if (stored === 'OK') return pending;
    return (await this.recall(key)) ?? pending;
  }

  async recall(key: string): Promise<PendingApproval | undefined> {
    const stored = await this.run(() => this.redis.get(this.key(key)));
    if (stored === null) return undefined;
    try {
      const parsed = JSON.parse(stored) as PendingApproval;
      if (typeof parsed?.id === 'string' && typeof parsed.url === 'string' && typeof parsed.expiresAt === 'number') return parsed;
    } catch {
      // Not ours: treated as nothing remembered (a new transaction is started).
    }
    return undefined;
  }

  async forget(key: string): Promise<void> {
    await this.run(() => this.redis.del(this.key(key)));
  }

  private usedKey(transactionId: string): string {
    return `${this.prefix}:approval-used:${transactionId}`;
  }

  async claim(transactionId: string, ttlMs: number): Promise<boolean> {
    const set = await this.run(() => this.redis.set(this.usedKey(transactionId), '1', 'PX', Math.max(1, Math.round(ttlMs)), 'NX'));
    return set === 'OK';
  }

  async release(transactionId: string): Promise<void> {
    await this.run(() => this.redis.del(this.usedKey(transactionId)));
  }
}
