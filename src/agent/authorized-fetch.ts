/**
 * The agent's `fetch` for MCP requests: each request with the current MCP token (and its DPoP
 * proof), then what the answer asks for — the DPoP nonce (RFC 9449 §9, once), a new token after a
 * 401 (once), a step-up sign-in for a scope a tool needs (`maxStepUps`), a refusal said as what it
 * is, and an approval the MCP server requires (ApprovalRequiredError). The agent (agent.ts) lends
 * what it needs as a {@link FetchHost}, as it does for the sign-in flows (person-sign-in.ts).
 */
import { parseScope } from '../core/scopes.ts';
import { ApprovalRequiredError, approvalRequestOf, askOfResponse } from './approval.ts';
import { parseChallenge, type Discovery } from './discovery.ts';
import type { DpopKeys } from './dpop.ts';
import { AgentError } from './errors.ts';
import { callOf, refusal, toolCalled } from './mcp-answers.ts';
import type { AgentOptions } from './options.ts';
import type { StoredTokens } from './store.ts';

/** What the fetch uses of the agent. */
export interface FetchHost {
  readonly options: AgentOptions;
  readonly dpop: DpopKeys;
  /** The token for the MCP resource (the agent remembers it: an approval is polled for with it). */
  mcpToken(): Promise<string>;
  /** Forgets the exchanged tokens (after a 401: the next request gets a new one). */
  forgetExchanged(): void;
  subjectToken(): Promise<StoredTokens>;
  login(scopes?: string[]): Promise<StoredTokens>;
  discovery(): Promise<Discovery>;
}

export function authorizedFetch(host: FetchHost): typeof fetch {
  return async (input, init) => {
    let stepUps = 0;
    let refreshed = false;
    let nonceRetried = false;
    for (;;) {
      const headers = new Headers(init?.headers);
      const token = await host.mcpToken();
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      const dpop = await host.dpop.authorize(headers, token, init?.method ?? 'GET', url, init?.body);
      const response = await fetch(input, { ...init, headers });
      if (dpop) {
        dpop.remember(url, response.headers.get('dpop-nonce'));
        // RFC 9449 §9: the resource wants a nonce — once more with it.
        if (response.status === 401 && !nonceRetried && parseChallenge(response.headers.get('www-authenticate')).error === 'use_dpop_nonce' && response.headers.get('dpop-nonce')) {
          nonceRetried = true;
          await response.body?.cancel().catch(() => undefined);
          continue;
        }
      }
      if (response.status === 401 && !refreshed) {
        refreshed = true;
        host.forgetExchanged();
        continue;
      }
      const challenge = parseChallenge(response.headers.get('www-authenticate'));
      if (response.status === 403 && challenge.error === 'insufficient_scope' && stepUps < (host.options.maxStepUps ?? 1)) {
        stepUps++;
        const current = parseScope((await host.subjectToken()).scope);
        const asked = parseScope(challenge.scope);
        await host.options.onStepUp?.({ tool: toolCalled(init?.body), scopes: asked, missing: asked.filter((scope) => !current.includes(scope)) });
        await host.login([...new Set([...current, ...asked])]);
        continue;
      }
      if (response.status === 403 && challenge.error === 'insufficient_scope') {
        throw new AgentError('scope_refused', `the MCP server needs scope ${challenge.scope ?? '(unnamed)'}, which was not granted`);
      }
      if (response.status === 401) {
        throw new AgentError('not_signed_in', `the MCP server does not accept the agent's token${challenge.error_description ? ` (${challenge.error_description})` : ''}: run \`mandate agent login\``);
      }
      const ask = askOfResponse(response);
      if (ask) {
        await response.body?.cancel().catch(() => undefined);
        const call = callOf(init?.body) ?? { name: '(unnamed)', arguments: {} };
        throw new ApprovalRequiredError(approvalRequestOf(ask, call, (await host.discovery()).issuer));
      }
      if (response.status === 403 || response.status === 429) throw await refusal(response, host.options.mcpUrl);
      return response;
    }
  };
}
