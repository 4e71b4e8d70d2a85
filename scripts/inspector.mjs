// `npm run inspector [-- <Inspector options>]`: the MCP Inspector 2 (the version the tests use),
// run with the Node 22 it needs (its engines ask for Node ≥ 22.19; Mandate supports Node 20). The
// first run installs both under .cache/inspector/ (`npm run inspector:install`, ~15 s); later runs
// start at once. `npx @modelcontextprotocol/inspector` on Node 20 would quietly fetch an old
// Inspector 1 instead, which cannot sign in to the demo.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const modules = join(root, '.cache', 'inspector', 'node_modules');
const node = join(modules, 'node', 'bin', 'node');
const launcher = join(modules, '@modelcontextprotocol', 'inspector', 'clients', 'launcher', 'build', 'index.js');

if (!existsSync(node) || !existsSync(launcher)) {
  const tool = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts['inspector:install'].split(' ').at(-1);
  console.error(`Installing the MCP Inspector (${tool}) and the Node 22 it needs under .cache/inspector/ (once)…`);
  const installed = spawnSync(process.execPath, [join(root, 'scripts', 'install-tool.mjs'), 'inspector', tool], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (installed.status !== 0) process.exit(installed.status ?? 1);
}
const child = spawn(node, [launcher, ...process.argv.slice(2)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
