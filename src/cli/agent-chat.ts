import type { Client } from '@modelcontextprotocol/sdk/client/index.js';

/** An OpenAI-compatible chat completions endpoint, from the environment. */
export interface ModelConfig {
  baseUrl: string;
  apiKey: string;
  model: string;
}

export function modelFromEnv(env: Record<string, string | undefined> = process.env): ModelConfig | undefined {
  if (!env.OPENAI_API_KEY) return undefined;
  return { baseUrl: (env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1').replace(/\/$/, ''), apiKey: env.OPENAI_API_KEY, model: env.OPENAI_MODEL ?? 'gpt-4o-mini' };
}

interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string | null;
  tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

const MAX_ROUNDS = 5;

/** Makes one tool call for the model: by default the MCP client's own; the CLI passes the agent's (approvals included). */
export type ToolCaller = (name: string, args: Record<string, unknown>) => ReturnType<Client['callTool']>;

/**
 * One prompt: the model sees the MCP server's tools as functions and chooses; each tool call goes
 * through the agent's MCP client (with the delegated token), and its result back to the model,
 * until the model answers in words (at most five rounds).
 */
export async function chatWithModel(
  model: ModelConfig,
  client: Client,
  tools: { name: string; description?: string; inputSchema: unknown }[],
  prompt: string,
  call: ToolCaller = (name, args) => client.callTool({ name, arguments: args }),
): Promise<string> {
  const messages: ChatMessage[] = [
    { role: 'system', content: 'You are an AI agent acting for the signed-in user through MCP tools. Use the tools to answer; say what you did.' },
    { role: 'user', content: prompt },
  ];
  const functions = tools.map((tool) => ({ type: 'function', function: { name: tool.name, description: tool.description ?? '', parameters: tool.inputSchema } }));
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const response = await fetch(`${model.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${model.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: model.model, messages, tools: functions }),
      signal: AbortSignal.timeout(120_000),
    });
    if (!response.ok) throw new Error(`the model endpoint answered ${response.status}: ${(await response.text()).slice(0, 200)}`);
    const reply = ((await response.json()) as { choices: { message: ChatMessage }[] }).choices[0]?.message;
    if (!reply) throw new Error('the model gave no answer');
    messages.push(reply);
    if (!reply.tool_calls?.length) return reply.content ?? '';
    for (const wanted of reply.tool_calls) {
      let content: string;
      try {
        const result = await call(wanted.function.name, JSON.parse(wanted.function.arguments || '{}') as Record<string, unknown>);
        content = JSON.stringify(result.content);
      } catch (error) {
        content = `error: ${(error as Error).message}`;
      }
      messages.push({ role: 'tool', tool_call_id: wanted.id, content });
    }
  }
  return '(stopped after five rounds of tool calls)';
}
