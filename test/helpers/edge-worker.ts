import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Miniflare + workerd + Node 22, installed by `npm run edge:install` under .cache/edge. */
export const EDGE = resolve('.cache/edge/node_modules');
export const NODE22 = join(EDGE, 'node/bin/node');
export const edgeAvailable = existsSync(NODE22) && existsSync(join(EDGE, 'miniflare/package.json'));
export const EDGE_SKIP_REASON = 'edge tests: run `npm run edge:install` (Miniflare and workerd need Node 22, installed under .cache/)';

export interface EdgeWorker {
  child: ChildProcess;
  /** The first isolate's origin. */
  url: string;
  /** Every isolate's origin (`--instances N`). */
  urls: string[];
  stdout(): string;
  /** The JSON lines the Worker logged with `"audit": tag`. */
  logLines(tag: string): Record<string, unknown>[];
  /** Waits for a logged line (written when the response is complete: may land just after it). */
  waitForLine(tag: string, predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Closes its stdin (scripts/edge-workerd.mjs then disposes of workerd) and waits for the exit. */
  stop(): Promise<void>;
}

/** `scripts/edge-workerd.mjs <args>` under the .cache Node 22; resolves when workerd listens. */
export async function startEdgeWorker(args: string[], startupMs = 30_000): Promise<EdgeWorker> {
  let out = '';
  let err = '';
  const child = spawn(NODE22, ['scripts/edge-workerd.mjs', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const first = await new Promise<{ url: string; urls?: string[] }>((ready, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`workerd did not start in ${startupMs} ms:\n${out}\n${err}`));
    }, startupMs);
    const check = () => {
      const line = out.split('\n').find((l) => l.startsWith('{"url":'));
      if (line && out.slice(out.indexOf(line) + line.length).includes('\n')) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        ready(JSON.parse(line) as { url: string; urls?: string[] });
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`workerd exited (${code}):\n${out}\n${err}`));
    });
  });
  const logLines = (tag: string) =>
    out
      .split('\n')
      .filter((line) => line.includes(`"audit":"${tag}"`))
      .map((line) => JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>);
  return {
    child,
    url: first.url,
    urls: first.urls ?? [first.url],
    stdout: () => out,
    logLines,
    async waitForLine(tag, predicate) {
      for (let i = 0; i < 50; i++) {
        const line = logLines(tag).find(predicate);
        if (line) return line;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.fail(`no such ${tag} line in the Worker's output:\n${out}\n${err}`);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      // SIGTERM disposes of workerd too; SIGKILL would leave it running, so only as a last resort.
      const timers = [setTimeout(() => child.kill('SIGTERM'), 10_000), setTimeout(() => child.kill('SIGKILL'), 20_000)];
      await exited;
      for (const timer of timers) clearTimeout(timer);
    },
  };
}
