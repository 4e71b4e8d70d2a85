import canonicalize from 'canonicalize';
import { sha256 } from './encoding.ts';

/**
 * The canonical hash of an MCP tool definition (issue 18, tool pinning): what a model reads and
 * what decides how it calls the tool. The fields hashed are `name`, `title`, `description`,
 * `inputSchema`, `outputSchema` and `annotations` (MCP 2025-06-18 and later, "Tool"); a field the
 * server leaves out is left out of the hash too (absent and `undefined` hash alike).
 *
 * `_meta` and `icons` are not hashed: `_meta` is for clients and tooling, not the model, and
 * servers put per-response values in it (timestamps, trace ids, UI hints) that would read as a
 * change on every list. A definition is serialized by RFC 8785 (JSON canonicalization: keys
 * sorted, numbers and strings in one form), so key order and white space do not matter, then
 * hashed with SHA-256 and written base64url without padding (43 characters).
 */
export const HASHED_TOOL_FIELDS = ['name', 'title', 'description', 'inputSchema', 'outputSchema', 'annotations'] as const;

export type HashedToolField = (typeof HASHED_TOOL_FIELDS)[number];

/** The part of a tool definition that is pinned: the hashed fields only. */
export type ToolDefinition = Partial<Record<HashedToolField, unknown>> & { name: string };

/** The pinned part of a tool as a server listed it; `undefined` when it has no string `name`. */
export function pinnedDefinition(tool: unknown): ToolDefinition | undefined {
  if (typeof tool !== 'object' || tool === null || Array.isArray(tool)) return undefined;
  const source = tool as Record<string, unknown>;
  if (typeof source.name !== 'string') return undefined;
  const definition: Record<string, unknown> = {};
  for (const field of HASHED_TOOL_FIELDS) if (source[field] !== undefined) definition[field] = source[field];
  return definition as ToolDefinition;
}

/**
 * base64url(SHA-256(RFC 8785 JSON of the pinned fields)).
 *
 * @example
 * await toolHash({ name: 'echo', description: 'Echoes', inputSchema: { type: 'object' } }); // 43 characters
 */
export async function toolHash(tool: unknown): Promise<string> {
  const definition = pinnedDefinition(tool);
  if (!definition) throw new TypeError('a tool definition needs a string name');
  const canonical = canonicalize(definition);
  if (canonical === undefined) throw new TypeError('the tool definition cannot be canonicalized');
  return sha256(canonical);
}

/** The hashed fields whose values differ between two definitions (a diff summary for the audit log). */
export function changedFields(before: ToolDefinition | undefined, after: ToolDefinition): HashedToolField[] {
  return HASHED_TOOL_FIELDS.filter((field) => canonicalize(before?.[field] ?? null) !== canonicalize(after[field] ?? null));
}
