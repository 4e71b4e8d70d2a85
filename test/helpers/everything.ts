import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './auth-server.ts';

/** The tools server-everything registers (for gateway routes, whose unlisted tools are denied). */
export const EVERYTHING_TOOLS = [
  'echo',
  'get-annotated-message',
  'get-env',
  'get-resource-links',
  'get-resource-reference',
  'get-roots-list',
  'get-structured-content',
  'get-sum',
  'get-tiny-image',
  'gzip-file-as-resource',
  'simulate-research-query',
  'toggle-simulated-logging',
  'toggle-subscriber-updates',
  'trigger-elicitation-request',
  'trigger-elicitation-request-async',
  'trigger-long-running-operation',
  'trigger-sampling-request',
  'trigger-sampling-request-async',
  'trigger-url-elicitation',
];

/**
 * `@modelcontextprotocol/server-everything`, unchanged, in Streamable HTTP mode on a free port (it
 * serves /mcp, with sessions). Started with node directly, so that stopping it stops the server.
 */
export async function startEverything(): Promise<{ url: string; close: () => Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ['node_modules/@modelcontextprotocol/server-everything/dist/index.js', 'streamableHttp'], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server-everything did not start in 20 s')), 20_000);
    let output = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('listening on port')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`server-everything exited with ${code}: ${output}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        // It shuts down cleanly on SIGINT only.
        child.kill('SIGINT');
        setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
      }),
  };
}
