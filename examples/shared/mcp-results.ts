/** Tool results for the example MCP servers (runtime-neutral: the Todo MCP server also runs on Workers). */

/** A tool result of one text part (JSON pretty-printed). */
export const text = (value: unknown) => ({ content: [{ type: 'text' as const, text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) }] });

/** A tool result that reports an error to the model (`isError`), not a protocol error. */
export const failure = (message: string) => ({ ...text(message), isError: true });
