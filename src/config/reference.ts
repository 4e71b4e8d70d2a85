/** Renders a configuration reference (Markdown) from a JSON Schema, so the docs cannot drift. */
type Node = {
  type?: string | string[];
  properties?: Record<string, Node>;
  items?: Node;
  default?: unknown;
  description?: string;
  enum?: unknown[];
  const?: unknown;
  format?: string;
  anyOf?: Node[];
  /** A discriminated union (gateway routes: `kind: mcp` or `kind: web`). */
  oneOf?: Node[];
  /** A record (`z.record`): the value every key maps to. */
  additionalProperties?: Node | boolean;
};

function typeOf(node: Node): string {
  if (node.enum) return node.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (node.const !== undefined) return `\`${String(node.const)}\``;
  if (node.anyOf) return node.anyOf.map(typeOf).join(' \\| ');
  if (node.type === 'array') return `list of ${node.items ? typeOf(node.items) : 'values'}`;
  if (node.format === 'uri') return 'URL';
  return Array.isArray(node.type) ? node.type.join(' \\| ') : (node.type ?? 'any');
}

function rows(node: Node, path: string, out: string[]): void {
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const name = path ? `${path}.${key}` : key;
    const shownDefault = child.default === undefined || (typeof child.default === 'object' && child.type === 'object') ? '' : `\`${JSON.stringify(child.default)}\``;
    out.push(`| \`${name}\` | ${typeOf(child)} | ${shownDefault} | ${(child.description ?? '').replace(/\|/g, '\\|')} |`);
    if (child.properties) rows(child, name, out);
    if (child.type === 'array' && child.items?.properties) rows(child.items, `${name}[]`, out);
    // A list of a discriminated union: each kind's keys, named by its discriminator (`routes[kind=web]`).
    for (const variant of child.type === 'array' ? (child.items?.oneOf ?? []) : []) {
      const kind = variant.properties?.kind;
      rows(variant, kind?.const !== undefined && kind.default === undefined ? `${name}[kind=${String(kind.const)}]` : `${name}[]`, out);
    }
    // A record's entries (per-tool rules) and a union's object form (`required` or `{ when, … }`).
    if (typeof child.additionalProperties === 'object' && child.additionalProperties.properties) rows(child.additionalProperties, `${name}.<name>`, out);
    for (const variant of child.anyOf ?? []) if (variant.properties) rows(variant, name, out);
  }
}

export function configReference(title: string, schema: Node): string {
  const out = [`## ${title}`, '', '| key | type | default | meaning |', '| --- | --- | --- | --- |'];
  rows(schema, '', out);
  return `${out.join('\n')}\n`;
}
