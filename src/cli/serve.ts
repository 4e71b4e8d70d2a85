import { loadAuthServerConfig } from '../config/load.ts';
import { startAuthServer } from '../auth-server/server.ts';
import { loadGatewayConfig, startGateway } from '../gateway/node/server.ts';
import { configOption } from './main.ts';

export async function serveCommand(args: string[]): Promise<number> {
  const { values, positionals } = configOption(args);
  const [what] = positionals;
  if (what !== 'auth' && what !== 'gateway') {
    process.stderr.write(`mandate serve: unknown service ${what ?? '(none)'}; try: mandate serve auth|gateway --config <file>\n`);
    return 2;
  }
  if (!values.config) {
    process.stderr.write(`mandate serve ${what}: --config <file> is required\n`);
    return 2;
  }
  if (what === 'gateway') {
    const gateway = await startGateway(await loadGatewayConfig(values.config), { configFile: values.config });
    process.stderr.write(`gateway listening on ${gateway.url} (metrics: ${gateway.adminUrl}/metrics); routes reload when ${values.config} changes\n`);
    await untilSignal();
    await gateway.close();
    return 0;
  }
  const config = await loadAuthServerConfig(values.config);
  const server = await startAuthServer(config);
  server.ctx.log.info({ issuer: server.ctx.issuer, listening: server.url }, 'authorization server ready');
  await untilSignal();
  await server.close();
  return 0;
}

/** Resolves on Ctrl-C or SIGTERM. */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
