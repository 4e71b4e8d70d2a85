import type { ToolPinsConfig } from '../../config/gateway-schema.ts';
import { PinBook } from './book.ts';
import { PinClient } from './client.ts';

/** A route's tool pinning, ready at request time (absent when the route has no `tool_pins` or `mode: off`). */
export interface CompiledPins {
  onChange: ToolPinsConfig['on_change'];
  book: PinBook;
}

export function compilePins(config: ToolPinsConfig | undefined, options: { issuer: string; resource: string; secret: (env: string) => string; fetch?: typeof fetch }): CompiledPins | undefined {
  if (!config || config.mode === 'off') return undefined;
  const client = new PinClient({
    issuer: options.issuer,
    clientId: config.client_id,
    clientSecret: options.secret(config.client_secret_env),
    resource: options.resource,
    firstUse: config.first_use,
    fetch: options.fetch,
  });
  return { onChange: config.on_change, book: new PinBook(client, { cacheSeconds: config.cache_seconds, negativeCacheSeconds: config.negative_cache_seconds }) };
}
