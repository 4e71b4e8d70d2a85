import { existsSync } from 'node:fs';
import { loadAuthServerConfig } from '../config/load.ts';
import { KeyManager } from '../auth-server/keys.ts';
import { maxTokenTtl } from '../auth-server/server.ts';
import { configOption } from './main.ts';

/**
 * `mandate keys list|rotate --config <file>`: works on the key file a running server re-reads on
 * change. The file is `<data_dir>/keys.json`, data_dir relative to the working directory.
 */
export async function keysCommand(args: string[]): Promise<number> {
  const { values, positionals } = configOption(args);
  const action = positionals[0];
  if ((action !== 'list' && action !== 'rotate') || !values.config) {
    process.stderr.write('usage: mandate keys list|rotate --config <file> [--now]\n');
    return 2;
  }
  const config = await loadAuthServerConfig(values.config);
  const keys = new KeyManager({ dataDir: config.data_dir, maxTokenTtl: maxTokenTtl(config) });
  const format = (t: number) => new Date(t * 1000).toISOString();
  if (action === 'list') {
    if (!existsSync(keys.file)) {
      process.stderr.write(`no key file at ${keys.file}: the server creates it on first start (data_dir is relative to the working directory)\n`);
      return 1;
    }
    for (const k of keys.list()) process.stdout.write(`${k.kid}  created ${format(k.createdAt)}  signs from ${format(k.useFrom)}\n`);
    return 0;
  }
  await keys.init();
  const { kid, useFrom } = await keys.rotate(values.now ? 0 : config.keys.publish_before_use);
  process.stdout.write(`new key ${kid}: published now, signs from ${format(useFrom)}\n`);
  return 0;
}
