import type { ToolPinsConfig } from '../../config/gateway-schema.ts';
import { PinBook } from './book.ts';
import { PinClient } from './client.ts';

/** A route's tool pinning, ready at request time (absent when the route has no `tool_pins` or `mode: off`). */
export interface CompiledPins {
  onChange: ToolPinsConfig['on_change'];
  book: PinBook;
}

/** What `mandate gateway pin` writes: the tools an upstream listed, for review, then `tool_pins.snapshot`. */
export interface ToolSnapshot {
  resource: string;
  tools: { name: string; hash: string; definition: Record<string, unknown> }[];
}

/** A snapshot (a file's content, or inline) checked; its tool name → hash map. Throws an Error naming what is wrong. */
export function snapshotHashes(content: unknown, resource: string): Record<string, string> {
  const file = content as Partial<ToolSnapshot> | null;
  if (typeof file !== 'object' || file === null || !Array.isArray(file.tools)) throw new Error('not a tool snapshot (mandate gateway pin writes one): no tools array');
  if (file.resource !== resource) throw new Error(`the snapshot is of resource ${String(file.resource)}, not ${resource}`);
  const hashes: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const tool of file.tools) {
    if (typeof tool?.name !== 'string' || typeof tool.hash !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(tool.hash)) throw new Error('every snapshot tool needs a name and a 43-character hash');
    if (Object.hasOwn(hashes, tool.name)) throw new Error(`the snapshot lists tool ${tool.name} twice`);
    hashes[tool.name] = tool.hash;
  }
  return hashes;
}

export function compilePins(
  config: ToolPinsConfig | undefined,
  options: { issuer: string; resource: string; secret: (env: string) => string; fetch?: typeof fetch; readSnapshot?: (file: string) => unknown },
): CompiledPins | undefined {
  if (!config || config.mode === 'off') return undefined;
  let snapshot: Record<string, string> | undefined;
  if (typeof config.snapshot === 'object') {
    // Inline (the Workers gateway's form: it has no file system).
    snapshot = snapshotHashes(config.snapshot, options.resource);
  } else if (config.snapshot !== undefined) {
    // Read by the host (the Node gateway reads the file next to its config); without a reader it cannot be honoured.
    if (!options.readSnapshot) throw new Error(`tool_pins.snapshot ${config.snapshot}: this runtime has no file system to read it from; give the snapshot inline (the file's JSON object as tool_pins.snapshot)`);
    snapshot = snapshotHashes(options.readSnapshot(config.snapshot), options.resource);
  }
  const client = new PinClient({
    issuer: options.issuer,
    clientId: config.client_id,
    clientSecret: options.secret(config.client_secret_env),
    resource: options.resource,
    firstUse: config.first_use,
    snapshot,
    fetch: options.fetch,
  });
  return { onChange: config.on_change, book: new PinBook(client, { cacheSeconds: config.cache_seconds, negativeCacheSeconds: config.negative_cache_seconds }) };
}
