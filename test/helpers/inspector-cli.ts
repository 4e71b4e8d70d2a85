import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { CallbackServer } from './callback-server.ts';
import { authorizeInChromium, type ChromiumAuthorizeOptions, type ChromiumAuthorizeResult } from './chromium.ts';
import { needsChromium, skipUnless } from './services.ts';

/**
 * Driving the MCP Inspector CLI (`@modelcontextprotocol/inspector --cli`) through its interactive
 * OAuth flow without a human or a terminal. The Inspector needs Node 22, so it is not a dev
 * dependency (Mandate supports Node 20): `npm run inspector:install` puts it and a Node 22 under
 * .cache/inspector/, and the tests that use it skip with a reason until then (`needsInspector`).
 *
 * How the CLI signs in (Inspector 2.x, clients/cli): on a 401 from an HTTP server it discovers the
 * authorization server (RFC 9728, RFC 8414), starts a one-shot loopback listener for the redirect
 * URI (`--callback-url`, default http://127.0.0.1:6276/oauth/callback; port 0 picks a free port,
 * and dynamic client registration then registers the real one), registers itself (RFC 7591,
 * client name "MCP Inspector") unless `--client-id` / `--client-metadata-url` is given, prints
 * `Please navigate to: <authorization URL>` on stderr, and tries to open a browser with the `open`
 * package (xdg-open on Linux). When the browser comes back to the listener it exchanges the code,
 * answers "OAuth complete" and then carries on with the requested method in the same run.
 *
 * Without a TTY on stdin or stderr it refuses to start that flow (exit 3, auth_required) unless
 * MCP_AUTO_OPEN_ENABLED=true, which also forces the browser launch. So the environment here sends
 * the launch to a recording script (BROWSER, honoured by xdg-open's generic mode, which
 * XDG_CURRENT_DESKTOP=X-Generic and no DISPLAY select) instead of a real browser, and the
 * authorization URL is read from stderr. Tokens go to a file secret store under the temporary HOME
 * ($HOME/.mcp-inspector/secrets.json, next to storage/oauth.json), so a later run with
 * `--stored-auth-only` reuses them; the default store would try the OS keychain and fall back to
 * memory, losing them at exit.
 */
const INSPECTOR_DIR = new URL('../../.cache/inspector/node_modules/', import.meta.url).pathname;
/** The Inspector's launcher (`inspector --cli …` runs the CLI), run with {@link INSPECTOR_NODE}. */
export const INSPECTOR_LAUNCHER = join(INSPECTOR_DIR, '@modelcontextprotocol/inspector/clients/launcher/build/index.js');
/** The Node 22 installed beside the Inspector (its engines ask for Node ≥ 22.19). */
export const INSPECTOR_NODE = join(INSPECTOR_DIR, 'node/bin/node');

/** Test options: skip (or fail, in CI) when `npm run inspector:install` has not been run. */
export const needsInspector = () =>
  skipUnless(existsSync(INSPECTOR_NODE) && existsSync(INSPECTOR_LAUNCHER), 'MCP Inspector tests: run `npm run inspector:install` (it needs Node 22, installed under .cache/)');

/** Test options for the Inspector signing in through Chromium: skips for whichever is missing. */
export function needsInspectorAndChromium(): { skip: string | false } {
  const inspector = needsInspector();
  return inspector.skip ? inspector : needsChromium();
}

export interface InspectorHome {
  /** The temporary HOME: the Inspector keeps its catalog, OAuth state and secrets under `.mcp-inspector/`. */
  dir: string;
  env: NodeJS.ProcessEnv;
  /** The URLs the CLI asked the (recording) browser to open, oldest first. */
  opened(): string[];
  cleanup(): void;
}

/** A temporary HOME and environment for the Inspector CLI, with browser launches recorded instead of performed. */
export function inspectorHome(): InspectorHome {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-inspector-oauth-'));
  const log = join(dir, 'opened-urls.txt');
  const recorder = join(dir, 'browser.sh');
  writeFileSync(recorder, `#!/bin/sh\nprintf '%s\\n' "$1" >> '${log}'\n`);
  chmodSync(recorder, 0o755);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    USERPROFILE: dir,
    MCP_AUTO_OPEN_ENABLED: 'true',
    MCP_INSPECTOR_SECRET_STORE: 'file',
    BROWSER: recorder,
    XDG_CURRENT_DESKTOP: 'X-Generic',
    NO_COLOR: '1',
  };
  // Nothing from the developer's desktop session or Inspector setup may leak in.
  for (const name of [
    'DISPLAY', 'WAYLAND_DISPLAY', 'DESKTOP_SESSION', 'KDE_FULL_SESSION', 'GNOME_DESKTOP_SESSION_ID', 'MATE_DESKTOP_SESSION_ID', 'LXQT_SESSION_CONFIG', 'XDG_RUNTIME_DIR',
    'MCP_OAUTH_CALLBACK_URL', 'MCP_CLIENT_CONFIG_PATH', 'MCP_CATALOG_PATH', 'MCP_STORAGE_DIR', 'MCP_INSPECTOR_SECRET_FILE', 'MCP_INSPECTOR_SECRET_KEY', 'MCP_INSPECTOR_SECRET_KEY_FILE', 'VITEST',
  ]) delete env[name];
  return {
    dir,
    env,
    opened: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface InspectorRun {
  child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  out(): string;
  err(): string;
  /** The authorization URL the CLI printed on stderr; rejects if it exits or times out first. */
  authorizationUrl(timeoutMs?: number): Promise<URL>;
  /** Waits for the exit; kills the CLI and rejects after the timeout. */
  done(timeoutMs?: number): Promise<number | null>;
  kill(): void;
}

/** Starts `inspector --cli <args...>` with stdin closed. */
export function runInspectorCli(home: InspectorHome, args: string[]): InspectorRun {
  const child = spawn(INSPECTOR_NODE, [INSPECTOR_LAUNCHER, '--cli', ...args], { env: home.env, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end();
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => {
    err += d;
    for (const listener of listeners) listener();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  const kill = () => {
    if (running()) child.kill('SIGKILL');
  };
  const describe = () => `stderr:\n${err}\nstdout:\n${out.slice(0, 2000)}`;
  return {
    child,
    exited,
    out: () => out,
    err: () => err,
    kill,
    authorizationUrl(timeoutMs = 20_000) {
      return new Promise<URL>((resolve, reject) => {
        const check = () => {
          const match = /^Please navigate to: (\S+)$/m.exec(err);
          if (!match) return;
          finish();
          resolve(new URL(match[1]!));
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`the Inspector CLI printed no authorization URL within ${timeoutMs} ms\n${describe()}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        void exited.then((code) => {
          if (!listeners.has(check)) return;
          finish();
          reject(new Error(`the Inspector CLI exited (${code}) without asking for authorization\n${describe()}`));
        });
        check();
      });
    },
    async done(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          kill();
          reject(new Error(`the Inspector CLI did not exit within ${timeoutMs} ms\n${describe()}`));
        }, timeoutMs);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Stands for a redirect URI served by the client under test (here the Inspector's own loopback
 * listener), so that `authorizeInChromium` can drive the login and consent pages up to it. The
 * browser having loaded that page is the receipt: the Inspector answers the callback only once it
 * has exchanged the code.
 */
export function externalRedirectUri(redirectUri: string): CallbackServer {
  const received: URL[] = [];
  return {
    redirectUri,
    origin: new URL(redirectUri).origin,
    received,
    headers: new Map(),
    next: () => Promise.reject(new Error(`${redirectUri} is served by the client under test; only expect() is available`)),
    expect: async (href) => {
      const url = new URL(href);
      received.push(url);
      return url;
    },
    close: async () => {},
  };
}

export interface InspectorOAuthResult extends Omit<ChromiumAuthorizeResult, 'redirect'> {
  /** The CLI's exit code. */
  code: number | null;
  authorizationUrl: URL;
  /** Where the browser was sent back to: the Inspector's callback with code, state and iss. */
  redirect: URL;
  stdout: string;
  stderr: string;
}

/**
 * Runs the Inspector CLI against an OAuth-protected HTTP server and completes its sign-in in
 * Chromium (login and consent as `authorizeInChromium` does them); resolves when the CLI has run
 * the requested method and exited. The callback listener gets a free port (`--callback-url` with
 * port 0) so parallel runs and a local Inspector on 6276 do not collide.
 */
export async function inspectorCliWithOAuth(
  browser: Browser | Page,
  home: InspectorHome,
  args: string[],
  options: Omit<ChromiumAuthorizeOptions, 'callback'> & { exitTimeout?: number } = {},
): Promise<InspectorOAuthResult> {
  const run = runInspectorCli(home, [...args, '--callback-url', 'http://127.0.0.1:0/oauth/callback']);
  try {
    const authorizationUrl = await run.authorizationUrl();
    const redirectUri = authorizationUrl.searchParams.get('redirect_uri');
    if (!redirectUri) throw new Error(`no redirect_uri in ${authorizationUrl.href}`);
    const { redirect, steps } = await authorizeInChromium(browser, authorizationUrl.href, { ...options, callback: externalRedirectUri(redirectUri) });
    const code = await run.done(options.exitTimeout ?? 30_000);
    return { code, authorizationUrl, redirect, steps, stdout: run.out(), stderr: run.err() };
  } finally {
    run.kill();
  }
}

/** Tool names from the stdout of `--method tools/list --format json` (`{"result":{"tools":[...]}}`). */
export function toolNames(stdout: string): string[] {
  const parsed = JSON.parse(stdout) as { result?: { tools?: { name: string }[] } };
  if (!parsed.result?.tools) throw new Error(`not a tools/list result: ${stdout.slice(0, 500)}`);
  return parsed.result.tools.map((tool) => tool.name).sort();
}
