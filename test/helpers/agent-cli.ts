import { spawn } from 'node:child_process';
import type { Browser } from 'playwright-core';
import { authorizeInChromium, type ChromiumAuthorizeResult } from './chromium.ts';
import { externalRedirectUri } from './inspector-cli.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

/** `mandate agent …` as a child process, its output collected. */
export function agentCli(args: string[], env: NodeJS.ProcessEnv, options: { pty?: boolean } = {}) {
  // `script` gives the child a pseudo-terminal, as a person at a terminal would have.
  const command = options.pty ? '/usr/bin/script' : process.execPath;
  const argv = options.pty ? ['-qfec', [process.execPath, BIN, 'agent', ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' '), '/dev/null'] : [BIN, 'agent', ...args];
  const child = spawn(command, argv, { env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = async (pattern: RegExp, stream: () => string, timeoutMs = 30_000) => {
    for (let waited = 0; waited < timeoutMs; waited += 50) {
      const match = pattern.exec(stream());
      if (match) return match;
      if (child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no ${pattern} from mandate agent ${args.join(' ')}\nstdout: ${out}\nstderr: ${err}`);
  };
  return {
    child,
    exited,
    out: () => out,
    err: () => err,
    waitFor,
    /** The sign-in URL the agent printed. */
    authorizationUrl: async () => new URL((await waitFor(/open this URL in a browser:\s+(\S+)/, () => err))[1]!),
  };
}

/** Runs an agent command that signs in, and completes the sign-in in Chromium; resolves with the exit code. */
export async function agentWithSignIn(browser: Browser, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string; sign: ChromiumAuthorizeResult; url: URL }> {
  const run = agentCli(args, env);
  try {
    const url = await run.authorizationUrl();
    const sign = await authorizeInChromium(browser, url.href, { callback: externalRedirectUri(url.searchParams.get('redirect_uri')!) });
    const code = await run.exited;
    return { code, out: run.out(), err: run.err(), sign, url };
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
  }
}
