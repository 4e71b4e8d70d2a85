import { RESTRICTION_CACHE_SECONDS } from '../../auth-server/context.ts';
import type { AgentAttributes, ClientRecord } from '../../store/types.ts';
import type { AdminDeps } from '../operation.ts';

export interface LifecycleChange {
  enabled?: boolean;
  /** ISO 8601, or null to clear. */
  expires_at?: string | null;
  owner?: string | null;
}

/**
 * Enables, disables, sets expiry or owner of a client (agents: all four; other clients: enabled).
 * Disabling revokes its grants and tokens, refuses its exchanges, and cuts off every token whose
 * delegation chain names it; re-enabling does not revive them. Records the domain events
 * (`agent.disabled`, `agent.enabled`, `agent.expiry_set`, `client.*` for other clients).
 */
export async function applyLifecycle(deps: Pick<AdminDeps, 'config' | 'store' | 'audit' | 'now' | 'refreshDisabled'>, record: ClientRecord, change: LifecycleChange): Promise<ClientRecord> {
  const now = deps.now();
  const agent: AgentAttributes | undefined = record.agent && { ...record.agent };
  if (agent && change.owner !== undefined) agent.owner = change.owner ?? undefined;
  if (agent && change.expires_at !== undefined) agent.expiresAt = change.expires_at ? Math.floor(Date.parse(change.expires_at) / 1000) : undefined;
  let { disabledAt, tokensValidAfter } = record;
  if (change.enabled === false && disabledAt === undefined) {
    disabledAt = now;
    // Re-enabling must not revive what was issued before: tokens older than this stay dead.
    tokensValidAfter = now;
  }
  if (change.enabled === true && disabledAt !== undefined) {
    // Another instance may have issued tokens until it learnt of the disable (its client cache):
    // those die too. Tokens issued after that window (or after now, if sooner) are good.
    const window = Math.max(deps.config.storage.client_cache_seconds, RESTRICTION_CACHE_SECONDS) + 1;
    tokensValidAfter = Math.max(tokensValidAfter ?? 0, Math.min(now, disabledAt + window));
    disabledAt = undefined;
  }
  await deps.store.clients.update(record.clientId, { ...(record.agent ? { agent } : {}), disabledAt, tokensValidAfter });
  const kind = record.agent ? 'agent' : 'client';
  if (record.agent && change.expires_at !== undefined) deps.audit.record({ at: now, type: 'agent.expiry_set', outcome: 'success', clientId: record.clientId, data: { expires_at: change.expires_at } });
  if (change.enabled === false && record.disabledAt === undefined) {
    await deps.store.grants.revokeByClient(record.clientId, now);
    deps.audit.record({ at: now, type: `${kind}.disabled`, outcome: 'success', clientId: record.clientId });
  } else if (change.enabled === true && record.disabledAt !== undefined) {
    deps.audit.record({ at: now, type: `${kind}.enabled`, outcome: 'success', clientId: record.clientId });
  }
  await deps.refreshDisabled();
  return (await deps.store.clients.find(record.clientId))!;
}
