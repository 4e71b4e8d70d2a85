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

Connects to the route's upstream (MCP, Streamable HTTP, without credentials: for upstreams that
have none of their own behind the gateway), lists its tools (every page), and writes each tool's
pinned definition and hash as JSON. Review the file, then name it in the route's
tool_pins.snapshot: tools with no pin yet are pinned to it instead of trusted on first use.
`;

/** `mandate gateway pin`: 0 written, 2 usage or configuration. */
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
  // Several upstreams: their prefixed tools are pinned on first use (a snapshot per route is for one server for now).
  if (!route.upstream) throw new ConfigError(`mandate gateway pin: the route at ${values.route} has several upstreams; pin snapshots are for one-upstream routes`);
  const client = new Client({ name: 'mandate-gateway-pin', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(route.upstream)));
  const snapshot: ToolSnapshot = { resource: route.resource, tools: [] };
  try {
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      for (const tool of page.tools) {
        const definition = pinnedDefinition(tool)!;
        snapshot.tools.push({ name: definition.name, hash: await toolHash(definition), definition });
        const flags = injectionFlags(definition);
        if (flags.length > 0) process.stderr.write(`warning: tool ${definition.name}: injection heuristic flags ${flags.join(', ')}: review its description\n`);
      }
      cursor = page.nextCursor;
    } while (cursor);
  } finally {
    await client.close();
  }
  writeFileSync(values.out, `${JSON.stringify(snapshot, null, 2)}\n`);
  process.stderr.write(`wrote ${values.out}: ${snapshot.tools.length} tools of ${route.upstream} for ${route.resource}\n`);
  return 0;
}
