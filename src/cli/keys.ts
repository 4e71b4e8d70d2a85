import { loadAuthServerConfig } from '../config/load.ts';
import { KeyManager } from '../auth-server/keys.ts';
import { maxTokenTtl } from '../auth-server/server.ts';
import { configOption } from './main.ts';

/** `mandate keys list|rotate`: works on the key file a running server re-reads on change. */
export async function keysCommand(args: string[]): Promise<number> {
  const { values, positionals } = configOption(args);
  const config = await loadAuthServerConfig(values.config ?? 'examples/demo/auth-server.yaml');
  const keys = new KeyManager({ dataDir: config.data_dir, maxTokenTtl: maxTokenTtl(config) });
  await keys.init();
  const format = (t: number) => new Date(t * 1000).toISOString();
  switch (positionals[0]) {
    case 'list':
      for (const k of keys.list()) process.stdout.write(`${k.kid}  created ${format(k.createdAt)}  signs from ${format(k.useFrom)}\n`);
      return 0;
    case 'rotate': {
      const delay = values.now ? 0 : config.keys.publish_before_use;
      const { kid, useFrom } = await keys.rotate(delay);
      process.stdout.write(`new key ${kid}: published now, signs from ${format(useFrom)}\n`);
      return 0;
    }
    default:
      process.stderr.write('usage: mandate keys list|rotate --config <file> [--now]\n');
      return 2;
  }
}
