import type { ToolDefinition } from '../core/tool-hash.ts';

/**
 * Tool pins (issue 18, docs/gateway.md "Tool pinning"): per protected resource, upstream and tool,
 * the definition an admin approved (or that was trusted on first use) and the one waiting for a
 * decision. `pinned`: the approved one is what the server lists; `changed`: it lists another one,
 * waiting; `new`: a tool that appeared on a resource already pinned, waiting; `rejected`: an admin
 * refused the waiting one (it stays refused while the server lists it).
 */
export type ToolPinStatus = 'pinned' | 'changed' | 'new' | 'rejected';

export interface ToolPinKey {
  resource: string;
  /** The upstream's name on a route with several; '' for a route with one. */
  upstream: string;
  tool: string;
}

export interface ToolPinRecord extends ToolPinKey {
  status: ToolPinStatus;
  approvedHash?: string;
  approvedDefinition?: ToolDefinition;
  pendingHash?: string;
  pendingDefinition?: ToolDefinition;
  /** Epoch seconds, as every time here. */
  firstSeen: number;
  changedAt?: number;
  /** Who approved: `first_use` (trusted on first sight) or the admin's username. */
  approvedBy?: string;
  approvedAt?: number;
  /** The client (a gateway) that last reported a definition. */
  reportedBy: string;
}

export interface ToolPinFilter {
  resource?: string;
  status?: ToolPinStatus;
  /** The last key of the previous page. */
  after?: ToolPinKey;
  limit: number;
}

/** Narrow, and every change one conditional UPDATE: of two gateways reporting at once, one wins. */
export interface ToolPinStore {
  find(key: ToolPinKey): Promise<ToolPinRecord | undefined>;
  /** Whether the resource (and upstream) has any pin: trust on first use applies only when not. */
  any(resource: string, upstream: string): Promise<boolean>;
  /** Inserts a pin unless one exists for the key; true when this call inserted it. */
  insert(record: ToolPinRecord): Promise<boolean>;
  /**
   * Makes `hash` the waiting definition (status `changed` with an approved one, else `new`) unless
   * it already is; true when this call changed it (the caller audits the change once).
   */
  propose(key: ToolPinKey, pending: { hash: string; definition: ToolDefinition; at: number; reportedBy: string }): Promise<boolean>;
  /** The server lists the approved definition again: back to `pinned`, nothing waiting. */
  restore(key: ToolPinKey, approvedHash: string): Promise<boolean>;
  /** Approves the waiting definition if it is still `hash`; false otherwise. */
  approve(key: ToolPinKey, hash: string, by: string, at: number): Promise<boolean>;
  /** Rejects the waiting definition if it is still `hash` and waiting; false otherwise. */
  reject(key: ToolPinKey, hash: string, at: number): Promise<boolean>;
  list(filter: ToolPinFilter): Promise<ToolPinRecord[]>;
}
