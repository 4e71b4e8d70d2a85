import type { MiddlewareHandler } from 'hono';
import type { CompiledRoute } from '../route.ts';
import type { GatewayEnv } from '../types.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';

const TOLD: Record<'new' | 'changed' | 'unknown', string> = {
  new: 'the tool is new on this server and not approved yet',
  changed: 'its definition changed since it was approved',
  unknown: 'its definition has not been seen and approved',
};

/**
 * The tool pinning filter for calls (docs/gateway.md "Tool pinning"): a tools/call of a tool
 * whose current definition is not the approved one is refused with `hide` and `refuse` (the
 * client may hold a list from before the change), audited with `allow_and_audit`. The verdict is
 * the one of the definition this route last listed (cached; the AS is asked on a miss); when the
 * AS cannot be asked, only a tool whose approved hash is known passes (fail closed).
 * tools/list answers are judged by the pinning forwarder (src/gateway/pins/forwarder.ts).
 */
export function pinTools(route: CompiledRoute): MiddlewareHandler<GatewayEnv> {
  const pins = route.pins!;
  return async function pinToolsMiddleware(c, next) {
    const message = c.get('mcp').message;
    if (message?.kind !== 'request' || message.method !== 'tools/call' || !message.toolName) return next();
    const name = message.toolName;
    const judgement = await pins.book.judgeCall(name);
    if (judgement.verdict === 'pinned' || judgement.verdict === 'none') return next();
    c.get('audit').tool_pin = judgement.verdict;
    if (pins.onChange === 'allow_and_audit') return next();
    if (judgement.verdict === 'unavailable') {
      return refuse(c, {
        status: 503,
        code: GATEWAY_ERRORS.unavailable,
        message: 'temporarily_unavailable: the tool approvals cannot be checked, retry shortly',
        rejection: 'tool_pins_unavailable',
        reason: `tool ${name}: no approved definition known and the authorization server cannot be asked: ${judgement.reason ?? 'unavailable'}`,
        decision: 'error',
        headers: { 'Retry-After': '1' },
      });
    }
    return refuse(c, {
      status: 403,
      code: GATEWAY_ERRORS.forbidden,
      message: `the call to tool ${name} was refused by the gateway policy: ${TOLD[judgement.verdict]}`,
      rejection: `tool_pin_${judgement.verdict}`,
      reason: `tool ${name}: definition ${judgement.hash ?? '(not listed here)'} is ${judgement.verdict}${judgement.approvedHash ? `, approved ${judgement.approvedHash}` : ', none approved'}; waiting for an admin (mandate gateway pins approve)`,
      data: { tool: name, pin: judgement.verdict },
    });
  };
}
