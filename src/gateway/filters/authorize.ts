import type { Context } from 'hono';
import { foldName } from '../mcp-message.ts';
import type { CompiledRoute, CompiledTool } from '../route.ts';
import type { GatewayEnv, GatewayFilter, Principal } from '../types.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';
import { evaluateRule } from '../rule-verdicts.ts';
import { boundJkt, challenge, type AuthScheme } from '../dpop.ts';

/**
 * `WWW-Authenticate` for 401/403 (RFC 6750 §3, RFC 9449 §7.1, RFC 9728 §5.1): where the metadata
 * is, which scopes help; the scheme the request used (or, with no error, each scheme the route takes).
 */
export function scopeChallenge(route: CompiledRoute, scopes: string[], error?: string, scheme: AuthScheme = 'Bearer', description?: string): string {
  return challenge(route.dpop, { metadataUrl: route.metadataUrl, scopes, error, scheme, description });
}

/**
 * What CEL rules see: the claims, the caller, the scopes, the delegation chain as a list (most
 * recent actor first), and the call itself.
 */
export function celVariables(c: Context<GatewayEnv>, route: CompiledRoute, principal: Principal, toolName?: string): Record<string, unknown> {
  const message = c.get('mcp').message;
  return {
    ...principal.cel,
    method: message?.method ?? '',
    tool: toolName ?? message?.toolName ?? '',
    args: message?.arguments ?? {},
    route: route.config.path,
    path: c.req.path,
    http_method: c.req.method,
  };
}

type ToolDecision = { allowed: true } | { allowed: false; missingScopes?: string[]; reason: string };

/** Whether the caller may call a tool: the tool policy, then its scopes, then its CEL rule. */
export function decideTool(route: CompiledRoute, tool: CompiledTool | undefined, name: string, principal: Principal, variables: () => Record<string, unknown>, listing = false): ToolDecision {
  if (!tool) return route.config.unlisted_tools === 'allow' ? { allowed: true } : { allowed: false, reason: `tool ${name} has no rule and unlisted tools are denied` };
  let missing: string[] | undefined;
  for (const scope of tool.scopes) if (!principal.scopes.includes(scope)) (missing ??= []).push(scope);
  if (missing) return { allowed: false, missingScopes: missing, reason: `missing scope ${missing.join(' ')}` };
  if (tool.allow) {
    let result: unknown;
    try {
      result = evaluateRule(tool.allow, principal, variables);
    } catch (error) {
      // Listing has no arguments: a rule that needs them cannot be judged, so the tool is shown
      // and the call itself is judged. A call whose rule fails is refused (fail closed).
      if (listing) return { allowed: true };
      return { allowed: false, reason: `rule failed: ${(error as { reason?: string }).reason ?? (error as Error).message}` };
    }
    if (result !== true) return { allowed: false, reason: tool.reason ?? `rule ${tool.allow.source} gave ${JSON.stringify(result)}` };
  }
  return { allowed: true };
}

/** Removes the tools the caller may not call from a `tools/list` result. */
export function filterToolList(result: unknown, visible: (name: string) => boolean): unknown {
  const tools = (result as { tools?: unknown })?.tools;
  if (!Array.isArray(tools)) return result;
  return { ...(result as object), tools: tools.filter((tool) => typeof tool?.name === 'string' && visible(tool.name as string)) };
}

/**
 * The tool authorization filter: per tool, scopes and CEL rules over the claims, the act chain
 * and the call. A call a rule refuses is answered with an error that says it was refused — never
 * "unknown tool", which would send an agent looking for a typo — and the reason is audited; a
 * tool the route has no entry for says that the route offers none by that name.
 * `tools/list` answers are filtered to what the caller may call.
 */
export function authorizeTools(route: CompiledRoute): GatewayFilter {
  const folded = new Map([...route.tools.keys()].map((name) => [foldName(name), name]));
  return function authorizeToolsMiddleware(c, next) {
    const message = c.get('mcp').message;
    const principal = c.get('principal');
    if (message?.kind === 'request' && message.method === 'tools/call') {
      const name = message.toolName!;
      const tool = route.tools.get(name);
      // `Transfer` or `transfer ` is not `transfer`, so its rules (scopes, approval) would not apply —
      // yet an upstream that matches names leniently would run `transfer`. Refused whatever unlisted_tools says.
      const imitated = tool ? undefined : folded.get(foldName(name));
      if (imitated !== undefined) {
        return refuse(c, {
          status: 403,
          code: GATEWAY_ERRORS.forbidden,
          message: `the call to tool ${JSON.stringify(name.slice(0, 100))} was refused by the gateway policy: it is not spelled as the tool ${imitated}`,
          rejection: 'tool_spelling',
          reason: `tool name ${JSON.stringify(name.slice(0, 100))} differs from the configured tool ${imitated} only by case, white space, invisible or compatibility characters`,
          data: { tool: imitated },
        });
      }
      const decision = decideTool(route, tool, name, principal, () => celVariables(c, route, principal));
      if (!decision.allowed) {
        if (decision.missingScopes) {
          return refuse(c, {
            status: 403,
            code: GATEWAY_ERRORS.forbidden,
            message: `insufficient scope: tool ${name} needs ${decision.missingScopes.join(' ')}`,
            rejection: 'insufficient_scope',
            reason: decision.reason,
            headers: { 'WWW-Authenticate': scopeChallenge(route, [...route.config.scopes, ...tool!.scopes], 'insufficient_scope', boundJkt(principal.claims) ? 'DPoP' : 'Bearer') },
          });
        }
        // A tool this route has no entry for (unlisted tools denied) is not offered here at all: the
        // client is told so (`listed: false`), so that a mistyped name is not taken for a policy
        // decision. Whether the upstream has such a tool is neither known nor said.
        if (!tool) {
          return refuse(c, {
            status: 403,
            code: GATEWAY_ERRORS.forbidden,
            message: `the call to tool ${name} was refused by the gateway policy: this route offers no tool by that name`,
            rejection: 'tool_denied',
            reason: decision.reason,
            data: { tool: name, listed: false },
          });
        }
        return refuse(c, { status: 403, code: GATEWAY_ERRORS.forbidden, message: `the call to tool ${name} was refused by the gateway policy`, rejection: 'tool_denied', reason: decision.reason });
      }
    } else if (message?.kind === 'request' && message.method === 'tools/list' && route.filtersToolList) {
      const visible = (name: string) => decideTool(route, route.tools.get(name), name, principal, () => celVariables(c, route, principal, name), true).allowed;
      c.set('rewriteResult', (result: unknown) => filterToolList(result, visible));
    }
    return next();
  };
}
