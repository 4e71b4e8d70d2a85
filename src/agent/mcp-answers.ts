import { AgentError } from './errors.ts';

/**
 * A refusal by the MCP server (a policy rule, a rate limit), in the words of its JSON-RPC error. A
 * tool the gateway does not offer at all (its error data says `listed: false`) is named as such:
 * a typo is not a policy decision.
 */
export async function refusal(response: Response, mcpUrl: string): Promise<AgentError> {
  const body = (await response.json().catch(() => ({}))) as { error?: { message?: unknown; data?: { tool?: unknown; listed?: unknown } } };
  const data = body.error?.data;
  if (response.status === 403 && data?.listed === false && typeof data.tool === 'string') {
    return new AgentError('unknown_tool', `no tool named ${data.tool} at ${mcpUrl} — \`mandate agent tools\` lists the tools you may call there`);
  }
  const message = typeof body.error?.message === 'string' ? body.error.message : `HTTP ${response.status}`;
  const retry = response.headers.get('retry-after');
  return new AgentError('refused', `the MCP server refused the call: ${message}${retry ? ` — try again in ${retry} s` : ''}`);
}

/** The tool a JSON-RPC request body calls, if it is a `tools/call`, and its arguments. */
export function callOf(body: unknown): { name: string; arguments: Record<string, unknown> } | undefined {
  if (typeof body !== 'string') return undefined;
  try {
    const message = JSON.parse(body) as { method?: unknown; params?: { name?: unknown; arguments?: unknown } };
    if (message.method !== 'tools/call' || typeof message.params?.name !== 'string') return undefined;
    const args = message.params.arguments;
    return { name: message.params.name, arguments: args && typeof args === 'object' ? (args as Record<string, unknown>) : {} };
  } catch {
    return undefined;
  }
}

export const toolCalled = (body: unknown) => callOf(body)?.name;
