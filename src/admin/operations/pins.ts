import { z } from 'zod';
import { changedFields } from '../../core/tool-hash.ts';
import { injectionFlags } from '../../core/tool-injection.ts';
import { pinAuditData } from '../../auth-server/tool-pins/pins.ts';
import type { ToolPinKey, ToolPinRecord } from '../../store/pin-store.ts';
import { AdminError, notFound } from '../errors.ts';
import { defineOperation, type AdminDeps } from '../operation.ts';
import { decodeCursor, encodeCursor, page } from '../pagination.ts';

/**
 * Tool pins (issue 18, docs/gateway.md "Tool pinning"): what gateways saw their upstreams list,
 * and the changes waiting for an admin. In the `resources` area: pins belong to a protected
 * resource's tools. Approving or rejecting names the hash reviewed, so a definition that changed
 * again after the admin read it is never approved by mistake (409).
 */

const STATUSES = ['pinned', 'changed', 'new', 'rejected'] as const;
const definition = z.record(z.string(), z.unknown()).nullable();

export const toolPinView = z.strictObject({
  resource: z.string().describe('The protected resource (the gateway route `resource`).'),
  upstream: z.string().describe("The upstream's name on a route with several; empty otherwise."),
  tool: z.string(),
  status: z.enum(STATUSES).describe('pinned: approved; changed / new: waiting for a decision; rejected: refused (still hidden while listed).'),
  approved_hash: z.string().nullable(),
  approved_definition: definition,
  pending_hash: z.string().nullable().describe('The definition waiting (changed, new, rejected): approve or reject it by this hash.'),
  pending_definition: definition,
  changed_fields: z.array(z.string()).describe('The fields of the waiting definition that differ from the approved one.'),
  injection_flags: z.array(z.string()).describe('The injection heuristic on the waiting definition (or the approved one): flags, never a verdict.'),
  first_seen: z.number().int().describe('Epoch seconds, as every time here.'),
  changed_at: z.number().int().nullable(),
  approved_by: z.string().nullable().describe('first_use[:<list id>] (trusted on first sight) or the admin.'),
  approved_at: z.number().int().nullable(),
  reported_by: z.string().describe('The gateway client that last reported it.'),
});

const toView = (pin: ToolPinRecord): z.output<typeof toolPinView> => ({
  resource: pin.resource,
  upstream: pin.upstream,
  tool: pin.tool,
  status: pin.status,
  approved_hash: pin.approvedHash ?? null,
  approved_definition: pin.approvedDefinition ?? null,
  pending_hash: pin.pendingHash ?? null,
  pending_definition: pin.pendingDefinition ?? null,
  changed_fields: pin.pendingDefinition ? changedFields(pin.approvedDefinition, pin.pendingDefinition) : [],
  injection_flags: injectionFlags(pin.pendingDefinition ?? pin.approvedDefinition ?? {}),
  first_seen: pin.firstSeen,
  changed_at: pin.changedAt ?? null,
  approved_by: pin.approvedBy ?? null,
  approved_at: pin.approvedAt ?? null,
  reported_by: pin.reportedBy,
});

const keyInput = {
  resource: z.string().min(1).max(2000),
  upstream: z.string().max(100).default(''),
  tool: z.string().min(1).max(200),
};

export const listToolPins = defineOperation({
  name: 'resources.list_tool_pins',
  area: 'resources',
  access: 'read',
  summary: 'Tool pins: the tool definitions gateways reported per resource; status "changed" or "new" lists what waits for approval.',
  input: z.strictObject({
    status: z.enum([...STATUSES, 'waiting']).optional().describe('waiting: changed and new.'),
    resource: z.string().min(1).max(2000).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50).describe('Items per page (1–200).'),
    cursor: z.string().max(2500).optional().describe('The next_cursor of the previous page.'),
  }),
  output: page(toolPinView),
  async run(deps, input) {
    let after: ToolPinKey | undefined;
    if (input.cursor !== undefined) {
      try {
        const [resource, upstream, tool] = JSON.parse(decodeCursor(input.cursor)) as unknown[];
        if (typeof resource !== 'string' || typeof upstream !== 'string' || typeof tool !== 'string') throw new Error('shape');
        after = { resource, upstream, tool };
      } catch {
        throw new AdminError('invalid_request', 'the cursor is not one this server gave');
      }
    }
    const wanted = input.status === 'waiting' ? undefined : input.status;
    const items: ToolPinRecord[] = [];
    // `waiting` is two statuses: read pages and keep what matches, up to one more than asked.
    for (;;) {
      const found = await deps.store.toolPins.list({ resource: input.resource, status: wanted, after, limit: input.limit + 1 });
      items.push(...found.filter((pin) => input.status !== 'waiting' || pin.status === 'changed' || pin.status === 'new'));
      if (found.length < input.limit + 1 || items.length > input.limit) break;
      after = found[found.length - 1];
    }
    const taken = items.slice(0, input.limit);
    const last = taken[taken.length - 1];
    return {
      items: taken.map(toView),
      next_cursor: items.length > input.limit && last ? encodeCursor(JSON.stringify([last.resource, last.upstream, last.tool])) : null,
    };
  },
});

async function decide(deps: AdminDeps, input: ToolPinKey & { hash: string }, by: string, decision: 'approve' | 'reject') {
  const key = { resource: input.resource, upstream: input.upstream, tool: input.tool };
  const pin = await deps.store.toolPins.find(key);
  if (!pin) throw notFound('tool pin');
  const at = deps.now();
  const done = decision === 'approve' ? await deps.store.toolPins.approve(key, input.hash, by, at) : await deps.store.toolPins.reject(key, input.hash, at);
  if (!done) {
    throw new AdminError('conflict', `the tool's waiting definition is not ${input.hash} (or nothing is waiting): read the pin again`, {
      reason: `tool ${input.tool} of ${input.resource}: status ${pin.status}, pending ${pin.pendingHash ?? 'none'}, asked to ${decision} ${input.hash}`,
    });
  }
  deps.audit.record({
    at,
    type: decision === 'approve' ? 'tool_pin.approved' : 'tool_pin.rejected',
    outcome: 'success',
    data: pinAuditData(key, pin.approvedDefinition, pin.pendingDefinition, { hash: input.hash, previous_hash: pin.approvedHash ?? null, by }),
  });
  return toView((await deps.store.toolPins.find(key))!);
}

const decisionInput = z.strictObject({ ...keyInput, hash: z.string().regex(/^[A-Za-z0-9_-]{43}$/).describe('The pending_hash reviewed.') });

export const approveToolPin = defineOperation({
  name: 'resources.approve_tool_pin',
  area: 'resources',
  access: 'write',
  summary: "Approves a tool's waiting definition (by the pending_hash reviewed): gateways show and let through the tool again.",
  input: decisionInput,
  output: toolPinView,
  target: (input) => ({ data: { resource: input.resource, upstream: input.upstream, tool: input.tool, hash: input.hash } }),
  run: (deps, input, caller) => decide(deps, input, caller.username, 'approve'),
});

export const rejectToolPin = defineOperation({
  name: 'resources.reject_tool_pin',
  area: 'resources',
  access: 'write',
  summary: "Rejects a tool's waiting definition (by the pending_hash reviewed): it stays hidden or refused while the server lists it.",
  input: decisionInput,
  output: toolPinView,
  target: (input) => ({ data: { resource: input.resource, upstream: input.upstream, tool: input.tool, hash: input.hash } }),
  run: (deps, input, caller) => decide(deps, input, caller.username, 'reject'),
});
