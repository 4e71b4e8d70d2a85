import type { Forwarder } from '../filters/proxy.ts';
import { rewriteResponse } from '../response-tap.ts';
import type { GatewayAuditEvent } from '../types.ts';
import type { ListedTool } from './book.ts';
import type { CompiledPins } from './compile.ts';

/**
 * The pinning forwarder of a route with tool pinning: tools/list answers are judged against the
 * pins (an AS round trip on a cache miss) before they go back, so they are forwarded by a
 * forwarder that returns the buffered answer (`portable`, fetch) rather than one that writes to
 * the socket itself; the judgement is async, a forwarder's rewrite is not. Tools not approved are
 * removed with `on_change: hide`; every answer carrying such tools, or flagged ones, is audited.
 * Everything else goes through the route's forwarder unchanged.
 */
export function pinningForwarder(pins: CompiledPins, inner: Forwarder, portable: Forwarder): Forwarder {
  return {
    async forward(c, target, hooks) {
      const message = c.get('mcp').message;
      if (message?.kind !== 'request' || message.method !== 'tools/list') return inner.forward(c, target, hooks);
      let raw: string | undefined;
      const response = await portable.forward(c, target, { ...hooks, rewrite: (body) => (raw = body) });
      if (raw === undefined) return response;
      await response.body?.cancel();
      const contentType = response.headers.get('content-type') ?? undefined;
      let tools: unknown[] | undefined;
      rewriteResponse(raw, contentType, message.id, (result) => {
        const listed = (result as { tools?: unknown })?.tools;
        if (Array.isArray(listed)) tools = listed;
        return result;
      });
      let body = raw;
      if (tools) {
        const judged = await pins.book.judgeList(tools);
        const hidden = new Set(pins.onChange === 'hide' ? judged.tools.filter((tool) => tool.verdict !== 'pinned').map((tool) => tool.name) : []);
        record(c.get('audit'), judged.tools, hidden, judged.unavailable);
        if (hidden.size > 0) {
          body = rewriteResponse(raw, contentType, message.id, (result) => ({
            ...(result as object),
            tools: (result as { tools: unknown[] }).tools.filter((tool) => !hidden.has((tool as { name?: string })?.name ?? '')),
          }));
        }
      }
      if (hooks.rewrite) body = hooks.rewrite(body, contentType);
      const headers = new Headers(response.headers);
      headers.delete('content-length');
      return new Response(body, { status: response.status, headers });
    },
    close: () => inner.close(),
  };
}

function record(audit: GatewayAuditEvent, tools: ListedTool[], hidden: Set<string>, unavailable: string | undefined): void {
  const named = (verdict: ListedTool['verdict']) => tools.filter((tool) => tool.verdict === verdict).map((tool) => tool.name);
  const flagged = Object.fromEntries(tools.filter((tool) => tool.flags.length > 0).map((tool) => [tool.name, tool.flags]));
  const entry: NonNullable<GatewayAuditEvent['tool_pins']> = {};
  const changed = named('changed');
  const fresh = named('new');
  const missing = [...named('unavailable'), ...named('invalid')];
  if (fresh.length) entry.new = fresh;
  if (changed.length) entry.changed = changed;
  if (missing.length) entry.unavailable = missing;
  if (hidden.size) entry.hidden = [...hidden];
  if (Object.keys(flagged).length) entry.flagged = flagged;
  if (unavailable && missing.length) entry.reason = unavailable;
  if (Object.keys(entry).length) audit.tool_pins = entry;
}
