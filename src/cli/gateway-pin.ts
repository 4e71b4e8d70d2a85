import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ConfigError, loadYaml, parseConfig } from '../config/load.ts';
import { gatewayConfigSchema } from '../config/gateway-schema.ts';
import { pinnedDefinition, toolHash } from '../core/tool-hash.ts';
import { injectionFlags } from '../core/tool-injection.ts';
import type { ToolSnapshot } from '../gateway/pins/compile.ts';

export const PIN_USAGE = `mandate gateway pin — a snapshot of a route's tools, for review (docs/gateway.md, "Tool pinning")

Usage:
  mandate gateway pin <gateway.yaml> --route <path> --out <file>

Connects to the route's upstream — or, on a route with upstreams:, to each of them — (MCP,
Streamable HTTP, without credentials: for upstreams that have none of their own behind the
gateway), lists its tools (every page), and writes each tool's pinned definition and hash as
JSON, with the names the gateway lists (<upstream><separator><tool> on a route with upstreams:).
Review the file, then name it in the route's tool_pins.snapshot (or paste it there, inline, for
the Workers gateway): tools with no pin yet are pinned to it instead of trusted on first use.
`;

/** Pages followed per upstream before the listing is refused as endless (a cursor that never ends). */
const MAX_PAGES = 1000;

/** Every tool one upstream lists, all pages, with the name the gateway gives it (`prefix` + its name). */
async function listUpstream(url: string, prefix: string, tools: ToolSnapshot['tools']): Promise<void> {
  const client = new Client({ name: 'mandate-gateway-pin', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    let cursor: string | undefined;
    const seen = new Set<string>();
    do {
      if (seen.size >= MAX_PAGES) throw new Error(`more than ${MAX_PAGES} pages of tools`);
      const page = await client.listTools(cursor ? { cursor } : {});
      for (const tool of page.tools) {
        // Hashed as the gateway sees it: on a route with upstreams, under its prefixed name.
        const definition = pinnedDefinition({ ...tool, name: `${prefix}${tool.name}` })!;
        if (tools.some((other) => other.name === definition.name)) throw new Error(`tool ${tool.name} is listed twice`);
        tools.push({ name: definition.name, hash: await toolHash(definition), definition });
        const flags = injectionFlags(definition);
        if (flags.length > 0) process.stderr.write(`warning: tool ${definition.name}: injection heuristic flags ${flags.join(', ')}: review its description\n`);
      }
      cursor = page.nextCursor;
      if (cursor !== undefined && seen.has(cursor)) throw new Error(`the cursor ${cursor} came twice`);
      if (cursor !== undefined) seen.add(cursor);
    } while (cursor);
  } finally {
    await client.close();
  }
}

/** `mandate gateway pin`: 0 written, 1 an upstream could not be listed (nothing written), 2 usage or configuration. */
export async function pinCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(PIN_USAGE);
    return 0;
  }
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { route: { type: 'string' }, out: { type: 'string', short: 'o' } } });
  if (positionals.length !== 1 || !values.route || !values.out) throw new ConfigError(`mandate gateway pin: a config file, --route and --out are required\n\n${PIN_USAGE}`);
  const file = positionals[0]!;
  const config = parseConfig(gatewayConfigSchema, await loadYaml(file), file);
  const route = config.routes.find((r) => r.path === values.route);
  if (!route || route.kind !== 'mcp') throw new ConfigError(`mandate gateway pin: ${file} has no MCP route at ${values.route}`);
  const snapshot: ToolSnapshot = { resource: route.resource, tools: [] };
  // One snapshot per route: with upstreams, every upstream's tools under their prefixed names (the pins' keys).
  const sources = route.upstreams ? route.upstreams.map((upstream) => ({ url: upstream.url, prefix: `${upstream.name}${route.separator}` })) : [{ url: route.upstream!, prefix: '' }];
  for (const source of sources) {
    try {
      await listUpstream(source.url, source.prefix, snapshot.tools);
    } catch (error) {
      // No partial snapshot: an upstream missing from it would have all its tools held as new.
      const cause = (error as Error).cause as Error | undefined;
      process.stderr.write(`mandate gateway pin: cannot list the tools of ${source.url}: ${(error as Error).message}${cause?.message ? ` (${cause.message})` : ''}; nothing written\n`);
      return 1;
    }
  }
  writeFileSync(values.out, `${JSON.stringify(snapshot, null, 2)}\n`);
  process.stderr.write(`wrote ${values.out}: ${snapshot.tools.length} tools of ${sources.map((source) => source.url).join(', ')} for ${route.resource}\n`);
  return 0;
}
