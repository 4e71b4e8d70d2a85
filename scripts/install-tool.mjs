// `npm run conformance:install`, `npm run inspector:install`: installs an outside tool that needs
// Node 22 (the MCP conformance suite, the MCP Inspector) under .cache/<dir>/, next to its own Node 22
// from the `node` package, never into the project's node_modules nor on the PATH of npm scripts.
// Mandate itself supports Node 20, so these tools are not dev dependencies: their engines would
// make every `npm install` warn. The tests that use a tool run it with that Node 22 and skip with
// a reason when it is not installed (fail under MANDATE_REQUIRE_SERVICES=1).
//
//   node scripts/install-tool.mjs <dir> <package@version>
//
// Two passes: the first fetches Node 22 with the running Node; the second runs npm under that
// Node 22 to install the tool, so npm checks the tool's engines against the Node that will run it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Exact: the Node that runs the tools is the one the tests were written against (npm checks each
// tarball against the registry's integrity hash).
const NODE = 'node@22.23.3';
const [dir, tool] = process.argv.slice(2);
if (!dir || !tool || process.argv.length > 4) {
  console.error('usage: node scripts/install-tool.mjs <dir under .cache> <package@version>');
  process.exit(2);
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prefix = join(root, '.cache', dir);
const nodeBin = join(prefix, 'node_modules', 'node', 'bin');

// Already there at this version: nothing to do (.ci/run calls this on every run).
const toolName = tool.slice(0, tool.lastIndexOf('@') > 0 ? tool.lastIndexOf('@') : undefined);
const installed = join(prefix, 'node_modules', toolName, 'package.json');
if (existsSync(join(nodeBin, 'node')) && existsSync(installed) && `${toolName}@${JSON.parse(readFileSync(installed, 'utf8')).version}` === tool) {
  console.log(`${tool} is installed in .cache/${dir}`);
  process.exit(0);
}
// The directory is a small project of its own: its package.json records the two packages and lets
// the `node` package run the install script that places its binary (npm 11 runs a dependency's
// install script only when allowScripts names it). The tool's own script is declined: the
// Inspector's installs its clients' dependencies in a source checkout and does nothing when
// installed from the registry.
mkdirSync(prefix, { recursive: true });
writeFileSync(join(prefix, 'package.json'), `${JSON.stringify({ private: true, allowScripts: { node: true, [toolName]: false } }, null, 2)}\n`);

function npm(args, env = process.env) {
  const result = spawnSync('npm', ['install', '--prefix', prefix, '--no-package-lock', '--save-exact', '--no-audit', '--no-fund', ...args], { stdio: 'inherit', env });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

npm([NODE]);
npm([tool], { ...process.env, PATH: `${nodeBin}${delimiter}${process.env.PATH ?? ''}` });
