import { changedFields, pinnedDefinition, toolHash, type ToolDefinition } from '../../core/tool-hash.ts';
import { injectionFlags } from '../../core/tool-injection.ts';
import { OAuthError } from '../../core/errors.ts';
import type { ToolPinKey, ToolPinRecord } from '../../store/pin-store.ts';
import type { ServerContext } from '../context.ts';

/**
 * Tool pins at the authorization server (issue 18, docs/gateway.md "Tool pinning"): gateways
 * report what their upstreams list and get a verdict per tool; admins approve or reject the
 * changes. The AS owns the pins so every gateway instance agrees. No HTTP here
 * (`endpoint.ts` is the gateways' adapter, src/admin/operations/pins.ts the admins').
 */

/** pinned: the approved definition; new: a tool not yet approved; changed: differs from the approved one; unknown: no pin (status queries only). */
export type PinVerdict = 'pinned' | 'new' | 'changed' | 'unknown';

export interface ToolVerdict {
  name: string;
  verdict: PinVerdict;
  /** The reported definition's hash (when one was reported). */
  hash?: string;
  approved_hash?: string;
}

/** Tools per report; a larger list is sent in several (the gateway batches under the body limit). */
export const MAX_TOOLS_PER_REPORT = 1000;
const NAME_MAX = 200;
const UPSTREAM_MAX = 100;
/** Bounded text of a description in an audit event (before and after). */
const AUDIT_TEXT_MAX = 500;
const HASH = /^[A-Za-z0-9_-]{43}$/;
const LIST_ID = /^[A-Za-z0-9_-]{1,64}$/;
const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u;

export const mayPinTools = (ctx: ServerContext, clientId: string) =>
  [...ctx.config.clients, ...ctx.config.agents].some((client) => client.client_id === clientId && client.tool_pins === 'allowed');

const bounded = (text: unknown) => (typeof text === 'string' ? (text.length > AUDIT_TEXT_MAX ? `${text.slice(0, AUDIT_TEXT_MAX)}…` : text) : undefined);

/** What an audit event says of a pin and a change: which fields changed, the descriptions (bounded), the heuristic's flags. */
export function pinAuditData(key: ToolPinKey, before: ToolDefinition | undefined, after: ToolDefinition | undefined, extra: Record<string, unknown> = {}) {
  return {
    resource: key.resource,
    upstream: key.upstream,
    tool: key.tool,
    ...(after ? { changed_fields: changedFields(before, after), description_before: bounded(before?.description), description_after: bounded(after.description) } : {}),
    ...(after ? { injection_flags: injectionFlags(after) } : {}),
    ...extra,
  };
}

interface ReportedTool {
  name: string;
  hash?: string;
  definition?: ToolDefinition;
}

export interface PinReport {
  resource: string;
  upstream: string;
  firstUse: 'pin' | 'pending';
  /** One tools/list answer sent in several batches shares its id: trust on first use spans them. */
  listId?: string;
  /** The route's reviewed snapshot (`tool_pins.snapshot`): tool name → approved hash; replaces trust on first use. */
  snapshot?: Map<string, string>;
  tools: ReportedTool[];
}

function text(value: unknown, name: string, max: number): string {
  if (typeof value !== 'string' || value === '') throw new OAuthError('invalid_request', `${name} must be a non-empty string`);
  if (value.length > max) throw new OAuthError('invalid_request', `${name} is longer than ${max} characters`);
  if (CONTROL.test(value)) throw new OAuthError('invalid_request', `${name} contains control or format characters`);
  return value;
}

/** Reads and checks a report; a definition's hash is computed here, never taken from the gateway. */
export async function readReport(ctx: ServerContext, body: Record<string, unknown>): Promise<PinReport> {
  const resource = text(body.resource, 'resource', 2000);
  if (!ctx.resource(resource)) throw new OAuthError('invalid_target', 'the resource is not one this server knows', { reason: `resource ${resource} is not configured` });
  const upstream = body.upstream === undefined ? '' : typeof body.upstream === 'string' && body.upstream.length <= UPSTREAM_MAX && !CONTROL.test(body.upstream) ? body.upstream : undefined;
  if (upstream === undefined) throw new OAuthError('invalid_request', `upstream must be a string of at most ${UPSTREAM_MAX} characters`);
  const firstUse = body.first_use === undefined ? 'pin' : body.first_use;
  if (firstUse !== 'pin' && firstUse !== 'pending') throw new OAuthError('invalid_request', 'first_use must be pin or pending');
  const listId = body.list_id === undefined ? undefined : typeof body.list_id === 'string' && LIST_ID.test(body.list_id) ? body.list_id : null;
  if (listId === null) throw new OAuthError('invalid_request', 'list_id must be 1 to 64 base64url characters');
  let snapshot: Map<string, string> | undefined;
  if (body.snapshot !== undefined) {
    if (typeof body.snapshot !== 'object' || body.snapshot === null || Array.isArray(body.snapshot) || Object.keys(body.snapshot).length > MAX_TOOLS_PER_REPORT * 10) {
      throw new OAuthError('invalid_request', 'snapshot must be an object of tool name → hash');
    }
    snapshot = new Map();
    for (const [name, hash] of Object.entries(body.snapshot as Record<string, unknown>)) {
      if (name === '' || name.length > NAME_MAX || typeof hash !== 'string' || !HASH.test(hash)) throw new OAuthError('invalid_request', 'snapshot must map tool names to base64url(SHA-256) hashes');
      snapshot.set(name, hash);
    }
  }
  if (!Array.isArray(body.tools) || body.tools.length > MAX_TOOLS_PER_REPORT) throw new OAuthError('invalid_request', `tools must be an array of at most ${MAX_TOOLS_PER_REPORT} entries`);
  const seen = new Set<string>();
  const tools: ReportedTool[] = [];
  for (const [index, entry] of (body.tools as unknown[]).entries()) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new OAuthError('invalid_request', `tools[${index}] must be an object`);
    const { name: rawName, hash: rawHash, definition: rawDefinition } = entry as Record<string, unknown>;
    const name = text(rawName, `tools[${index}].name`, NAME_MAX);
    if (seen.has(name)) throw new OAuthError('invalid_request', `tools[${index}]: tool ${name} is listed twice`);
    seen.add(name);
    if (rawDefinition !== undefined) {
      const definition = pinnedDefinition(rawDefinition);
      if (!definition || definition.name !== name) throw new OAuthError('invalid_request', `tools[${index}].definition must be a tool definition named ${name}`);
      let hash: string;
      try {
        hash = await toolHash(definition);
      } catch (error) {
        throw new OAuthError('invalid_request', `tools[${index}].definition cannot be canonicalized`, { reason: (error as Error).message });
      }
      if (rawHash !== undefined && rawHash !== hash) throw new OAuthError('invalid_request', `tools[${index}].hash is not the hash of its definition`, { reason: `reported ${String(rawHash)}, computed ${hash}` });
      tools.push({ name, hash, definition });
    } else if (rawHash !== undefined) {
      if (typeof rawHash !== 'string' || !HASH.test(rawHash)) throw new OAuthError('invalid_request', `tools[${index}].hash must be base64url(SHA-256), 43 characters`);
      tools.push({ name, hash: rawHash });
    } else {
      tools.push({ name });
    }
  }
  return { resource, upstream, firstUse, listId, snapshot, tools };
}

/** The verdict of a pin for a hash (or, without one, for what the server last listed). */
function verdictOf(pin: ToolPinRecord, hash: string | undefined): ToolVerdict {
  const approved = pin.approvedHash !== undefined ? { approved_hash: pin.approvedHash } : {};
  if (hash === undefined) {
    return { name: pin.tool, verdict: pin.status === 'pinned' ? 'pinned' : pin.approvedHash !== undefined ? 'changed' : 'new', ...approved };
  }
  if (hash === pin.approvedHash) return { name: pin.tool, verdict: 'pinned', hash, ...approved };
  return { name: pin.tool, verdict: pin.approvedHash !== undefined ? 'changed' : 'new', hash, ...approved };
}

/**
 * The verdict for each reported tool, recording what is new: the first sight of a resource with
 * no pins is trusted (recorded as approved, `tool_pin.recorded`) unless the gateway says
 * `first_use: pending`; with a snapshot, a tool without a pin is pinned to the snapshot's hash
 * instead (listed with another hash: `changed`; absent from it: `new`); a tool that differs from its pin, or a new tool on a resource already
 * pinned, is recorded as waiting (`tool_pin.changed`, once per definition) for an admin.
 */
export async function reportTools(ctx: ServerContext, reportedBy: string, report: PinReport): Promise<ToolVerdict[]> {
  const { resource, upstream } = report;
  const firstUseBy = `first_use${report.listId ? `:${report.listId}` : ''}`;
  let trusting: boolean | undefined;
  // Trust on first use: nothing pinned here yet, or only what the batches or pages of this same listing pinned (within LIST_TRUST_SECONDS).
  const mayTrust = async () => {
    if (report.firstUse !== 'pin') return false;
    trusting ??= !(await ctx.store.toolPins.any(resource, upstream)) || (report.listId !== undefined && (await onlyThisList(ctx, resource, upstream, firstUseBy)));
    return trusting;
  };
  const verdicts: ToolVerdict[] = [];
  for (const tool of report.tools) {
    const key = { resource, upstream, tool: tool.name };
    let pin = await ctx.store.toolPins.find(key);
    if (!tool.definition) {
      verdicts.push(pin ? verdictOf(pin, tool.hash) : { name: tool.name, verdict: 'unknown', ...(tool.hash ? { hash: tool.hash } : {}) });
      continue;
    }
    const hash = tool.hash!;
    const at = ctx.now();
    if (!pin) {
      // A reviewed snapshot decides a tool's first pin; without one, trust on first use (or not).
      const reviewed = report.snapshot?.get(tool.name);
      const trusted = report.snapshot ? reviewed === hash : await mayTrust();
      const by = report.snapshot ? 'snapshot' : firstUseBy;
      const record: ToolPinRecord = trusted
        ? { ...key, status: 'pinned', approvedHash: hash, approvedDefinition: tool.definition, firstSeen: at, approvedBy: by, approvedAt: at, reportedBy }
        : reviewed !== undefined
          ? { ...key, status: 'changed', approvedHash: reviewed, pendingHash: hash, pendingDefinition: tool.definition, firstSeen: at, changedAt: at, approvedBy: 'snapshot', approvedAt: at, reportedBy }
          : { ...key, status: 'new', pendingHash: hash, pendingDefinition: tool.definition, firstSeen: at, changedAt: at, reportedBy };
      const change = trusted ? (report.snapshot ? 'snapshot' : 'first_use') : reviewed !== undefined ? 'changed' : 'new';
      if (await ctx.store.toolPins.insert(record)) {
        ctx.audit.record({
          at,
          type: trusted ? 'tool_pin.recorded' : 'tool_pin.changed',
          outcome: 'success',
          clientId: reportedBy,
          data: pinAuditData(key, undefined, tool.definition, { hash, change, ...(reviewed !== undefined && !trusted ? { approved_hash: reviewed } : {}) }),
        });
      }
      pin = (await ctx.store.toolPins.find(key)) ?? record;
    } else if (hash === pin.approvedHash) {
      // The approved definition is listed again: whatever was waiting is moot.
      if (pin.status !== 'pinned') await ctx.store.toolPins.restore(key, hash);
    } else if (await ctx.store.toolPins.propose(key, { hash, definition: tool.definition, at, reportedBy })) {
      ctx.audit.record({
        at,
        type: 'tool_pin.changed',
        outcome: 'success',
        clientId: reportedBy,
        data: pinAuditData(key, pin.approvedDefinition ?? pin.pendingDefinition, tool.definition, { hash, approved_hash: pin.approvedHash, change: pin.approvedHash ? 'changed' : 'new' }),
      });
    }
    verdicts.push(verdictOf(pin, hash));
  }
  return verdicts;
}

/**
 * How long after a listing's first pins its later batches or pages may still be trusted on first
 * use with it. The gateway follows a paginated listing for 60 s (LISTING_WINDOW_MS in
 * src/gateway/pins/book.ts); this is the AS's own bound, with a margin, so that a `list_id` cannot
 * extend a first use later on whatever a gateway sends.
 */
export const LIST_TRUST_SECONDS = 120;

/** Every pin of the resource (and upstream) was trusted on first use by this listing, recently. */
async function onlyThisList(ctx: ServerContext, resource: string, upstream: string, firstUseBy: string): Promise<boolean> {
  const pins = await ctx.store.toolPins.list({ resource, limit: MAX_TOOLS_PER_REPORT * 10 });
  const since = ctx.now() - LIST_TRUST_SECONDS; // ctx.now(): seconds
  return pins.filter((pin) => pin.upstream === upstream).every((pin) => pin.approvedBy === firstUseBy && pin.status === 'pinned' && (pin.approvedAt ?? 0) >= since);
}
