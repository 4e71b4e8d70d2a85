import type { Forwarder } from '../filters/proxy.ts';
import { isEventStream } from '../response-tap.ts';
import { answerOnly, onlyTheAnswer, strictAnswer } from './answer.ts';
import type { GatewayAuditEvent } from '../types.ts';
import type { ListedTool } from './book.ts';
import type { CompiledPins } from './compile.ts';

/**
 * The pinning forwarder of a route with tool pinning: tools/list answers are judged against the
 * pins (an AS round trip on a cache miss) before they go back, through the route's own forwarder
 * and its (async) rewrite hook — so the request gets the same forwarding headers and the answer the
 * same size limit as any other. Tools not approved are removed with `on_change: hide`; every answer
 * carrying such tools, or flagged ones, is audited; an answer that cannot be judged is refused
 * (./answer.ts). In every other SSE answer, and on the GET stream, a JSON-RPC response that is not
 * the answer to the request is dropped, and a JSON answer holding one is refused: a client would
 * take it for the answer to its `tools/list`. (JSON answers are therefore read whole, up to the
 * rewrite limit.)
 */
/**
 * The answers the gateway reads must come as sent, not compressed (RFC 9110 §12.5.3): the Node
 * forwarder reads the upstream's bytes as they are, and a compressed body would not be read (a
 * client's `Accept-Encoding` is replaced).
 */
export const IDENTITY = { 'accept-encoding': 'identity' };

export function pinningForwarder(pins: CompiledPins, inner: Forwarder): Forwarder {
  return {
    async forward(c, target, hooks) {
      const message = c.get('mcp').message;
      if (message?.kind !== 'request' || message.method !== 'tools/list') {
        const id = message?.kind === 'request' ? message.id : undefined;
        const { events, rewrite: own, rewrites } = hooks;
        const rewritten = (contentType: string | undefined) => own !== undefined && (rewrites?.(contentType) ?? true);
        return inner.forward(c, target, {
          ...hooks,
          upstreamHeaders: { ...hooks.upstreamHeaders, ...IDENTITY },
          events: (event) => answerOnly(events ? events(event) : event, id),
          // JSON answers are read whole (an SSE one event by event, above, unless rewritten anyway).
          rewrites: (contentType) => !isEventStream(contentType) || rewritten(contentType),
          rewrite: async (body, contentType) => onlyTheAnswer(rewritten(contentType) ? await own!(body, contentType) : body, contentType, id, (message?.kind === 'request' && message.method) || c.req.method),
        });
      }
      const rewrite = async (raw: string, contentType: string | undefined): Promise<string> => {
        // The caller whose cursors continue a paginated listing: its MCP session and principal.
        const principal = c.get('principal');
        const caller = `${c.get('mcp').sessionId ?? ''}\0${principal?.sub ?? ''}\0${principal?.clientId ?? ''}`;
        const cursor = typeof message.params?.cursor === 'string' ? message.params.cursor : undefined;
        let body = await judgeToolList(c.get('audit'), pins, raw, contentType, message.id, { caller, cursor });
        if (hooks.rewrite) body = await hooks.rewrite(body, contentType);
        return body;
      };
      return inner.forward(c, target, { ...hooks, rewrite, upstreamHeaders: { ...hooks.upstreamHeaders, ...IDENTITY } });
    },
    clientAddress: inner.clientAddress && ((c) => inner.clientAddress!(c)),
    close: () => inner.close(),
  };
}

/**
 * A tools/list answer judged against the pins: the tools not approved hidden with `on_change:
 * hide`, the verdicts audited. The answer is read strictly and written again (only what was judged
 * goes back); one that cannot be judged throws {@link InvalidAnswer} (502, `upstream_invalid_answer`).
 * With `page` (who asked, and the cursor asked for), a page of a paginated listing is reported as
 * part of that listing (PinBook.pageListing).
 */
export async function judgeToolList(
  audit: GatewayAuditEvent,
  pins: CompiledPins,
  raw: string,
  contentType: string | undefined,
  id: string | number | undefined,
  page?: { caller: string; cursor?: string },
): Promise<string> {
  const { answer, write } = strictAnswer(raw, contentType, id);
  if (!answer.result) return write(answer);
  const tools = answer.result.tools;
  const next = answer.result.nextCursor;
  const listId = page ? pins.book.pageListing(page.caller, page.cursor, typeof next === 'string' ? next : undefined) : undefined;
  const judged = await pins.book.judgeList(tools, listId);
  const hidden = new Set(pins.onChange === 'hide' ? judged.tools.filter((tool) => tool.verdict !== 'pinned').map((tool) => tool.name) : []);
  record(audit, judged.tools, hidden, judged.unavailable);
  if (hidden.size === 0) return write(answer);
  return write({ ...answer, result: { ...answer.result, tools: tools.filter((tool) => !hidden.has((tool as { name?: string })?.name ?? '')) } });
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
