import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

/** The build is current when its stamp is newer than every file under src/ and examples/ (what bin/mandate.js checks). */
function buildIsCurrent(): boolean {
  const stamp = join(ROOT, 'dist/.build-stamp');
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  return ['src', 'examples'].every((dir) =>
    readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true }).every((entry) => !entry.isFile() || statSync(join(entry.parentPath, entry.name)).mtimeMs <= built),
  );
}

/** npm (or npx) as a user runs it: none of the npm_* settings of an `npm test` around this run. */
function npm(args: string[], cwd: string, timeout = 120_000, command = 'npm') {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));
  return run(command, args, { cwd, env, timeout, maxBuffer: 16 * 1024 * 1024 });
}

/**
 * The package as a user gets it: `npm pack`, then the tarball installed into an empty project,
 * imported from plain Node ESM (no TypeScript loader) and type-checked from a TypeScript consumer.
 */
describe('package: the packed tarball installs and runs without TypeScript', { timeout: 300_000 }, () => {
  let dir: string;
  let project: string;
  let files: string[];
  let installOutput: string;

  before(async () => {
    if (!buildIsCurrent()) await run(process.execPath, [join(ROOT, 'scripts/build.mjs')], { timeout: 180_000 });
    dir = mkdtempSync(join(tmpdir(), 'mandate-pack-'));
    // The build is current: packing must not rebuild it (`prepare` would, with the dev dependencies).
    const packed = JSON.parse((await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], ROOT)).stdout) as { filename: string; files: { path: string }[] }[];
    files = packed[0]!.files.map((file) => file.path);
    project = join(dir, 'project');
    await run('mkdir', [project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    const installed = await npm(['install', join(dir, packed[0]!.filename), '--prefer-offline', '--no-audit', '--no-fund'], project, 180_000);
    installOutput = installed.stdout + installed.stderr;
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('holds the build (JS, declarations, maps with their sources, example configurations), bin/ and schema/, never src/ or tests', () => {
    for (const file of ['bin/mandate.js', 'dist/src/cli/main.js', 'dist/src/gateway/index.js', 'dist/src/gateway/index.d.ts', 'dist/src/core/index.js.map', 'dist/examples/demo/auth-server.yaml', 'dist/examples/demo/gateway.yaml', 'schema/gateway.schema.json', 'README.md', 'LICENSE', 'package.json']) {
      assert.ok(files.includes(file), `${file} is in the tarball`);
    }
    const stray = files.filter(
      (file) =>
        /^(src|test|bench|scripts|\.ci|\.mandate|\.cache)\//.test(file) ||
        (file.endsWith('.ts') && !file.endsWith('.d.ts')) ||
        file.endsWith('.build-stamp') ||
        // examples/ travels as compiled code and its YAML configurations, nothing else found on disk
        (file.startsWith('dist/examples/') && !/\.(js|d\.ts|js\.map|d\.ts\.map|ya?ml)$/.test(file)),
    );
    assert.deepEqual(stray, []);
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules/mandate/package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      for (const file of typeof target === 'string' ? [target] : Object.values(target)) assert.ok(existsSync(join(project, 'node_modules/mandate', file)), `${subpath} → ${file} exists`);
    }
    const map = JSON.parse(readFileSync(join(project, 'node_modules/mandate/dist/src/core/pkce.js.map'), 'utf8')) as { sourcesContent?: string[] };
    assert.match(map.sourcesContent?.[0] ?? '', /export function checkCodeChallenge/);
  });

  it('installs on this Node without an engine warning (its own engines and its dependencies\'), and brings no TypeScript tooling', () => {
    assert.doesNotMatch(installOutput, /EBADENGINE/);
    const modules = readdirSync(join(project, 'node_modules'));
    for (const tool of ['tsx', 'typescript', 'esbuild']) assert.ok(!modules.includes(tool), `${tool} is not installed`);
  });

  it('mandate/core, mandate/agent and mandate/gateway (and every other subpath) import from plain Node ESM and work', async () => {
    writeFileSync(
      join(project, 'use.mjs'),
      `import { checkCodeChallenge, verifyCodeVerifier, parseScope, OAuthError } from 'mandate/core';
import { pkce, parseChallenge, MandateAgent } from 'mandate/agent';
import { parseMcpMessage, JsonRpcError, gatewayApp } from 'mandate/gateway';

const { verifier, challenge } = pkce();
await verifyCodeVerifier(verifier, checkCodeChallenge(challenge, 'S256'));
const refused = await verifyCodeVerifier(pkce().verifier, challenge).catch((error) => error instanceof OAuthError && error.code);
const call = parseMcpMessage({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'read_balance', arguments: { account: 'a' } } });
let batch;
try { parseMcpMessage([]); } catch (error) { batch = error instanceof JsonRpcError && error.code; }
const subpaths = {};
for (const name of ['core', 'store', 'auth-server', 'config', 'gateway', 'gateway/node', 'gateway/workers', 'agent']) subpaths[name] = Object.keys(await import(\`mandate/\${name}\`)).length;
console.log(JSON.stringify({
  subpaths,
  resolved: ['mandate/core', 'mandate/agent', 'mandate/gateway'].map((name) => import.meta.resolve(name)),
  scope: parseScope('openid  mcp:use'),
  refused,
  call: { kind: call.kind, id: call.id, toolName: call.toolName },
  batch,
  challenge: parseChallenge('Bearer error="invalid_token", resource_metadata="https://bank.example/.well-known/oauth-protected-resource"'),
  types: [typeof MandateAgent, typeof gatewayApp],
}));
`,
    );
    const { stdout } = await run(process.execPath, ['use.mjs'], { cwd: project, timeout: 30_000 });
    const result = JSON.parse(stdout) as Record<string, unknown>;
    for (const [name, count] of Object.entries(result.subpaths as Record<string, number>)) assert.ok(count > 0, `mandate/${name} has exports`);
    assert.equal(Object.keys(result.subpaths as object).length, 8);
    const resolved = result.resolved as string[];
    for (const [i, area] of ['core', 'agent', 'gateway'].entries()) assert.ok(resolved[i]!.endsWith(`/node_modules/mandate/dist/src/${area}/index.js`), resolved[i]);
    assert.deepEqual(result.scope, ['openid', 'mcp:use']);
    assert.equal(result.refused, 'invalid_grant');
    assert.deepEqual(result.call, { kind: 'request', id: 7, toolName: 'read_balance' });
    assert.equal(result.batch, -32600);
    assert.deepEqual(result.challenge, { error: 'invalid_token', resource_metadata: 'https://bank.example/.well-known/oauth-protected-resource' });
    assert.deepEqual(result.types, ['function', 'function']);
  });

  it('its declarations type-check a strict TypeScript consumer (NodeNext), with real types rather than any', async () => {
    writeFileSync(
      join(project, 'use.ts'),
      `import { parseScope, OAuthError } from 'mandate/core';
import { MandateAgent } from 'mandate/agent';
import { compileRoute } from 'mandate/gateway';
import { startGateway } from 'mandate/gateway/node';
import { startAuthServer } from 'mandate/auth-server';
import { loadAuthServerConfig } from 'mandate/config';
import { openSqlStore } from 'mandate/store';

const scopes: string[] = parseScope('openid mcp:use');
// @ts-expect-error parseScope returns string[]: were the declarations missing, this would be any and pass.
const wrong: number = parseScope('openid');
// @ts-expect-error a route is required (declared in route.d.ts, which index.d.ts re-exports).
compileRoute();
export const used = [scopes, wrong, OAuthError, MandateAgent, compileRoute, startGateway, startAuthServer, loadAuthServerConfig, openSqlStore];
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, typeRoots: [join(ROOT, 'node_modules/@types')], types: ['node'] },
        files: ['use.ts'],
      }),
    );
    const checked = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: project, timeout: 120_000 }).catch((error: { stdout: string }) => error);
    assert.equal(checked.stdout, '');
  });

  it('the README\'s library example (a resource server protected by mandate/gateway) runs from the installed package', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Using Mandate as a library'));
    const example = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(example?.includes("from 'mandate/gateway'"), 'the README shows the resource-server example');
    const server = await new Promise<import('node:net').AddressInfo>((resolve) => {
      const probe = createNetServer().listen(0, '127.0.0.1', () => {
        const address = probe.address() as import('node:net').AddressInfo;
        probe.close(() => resolve(address));
      });
    });
    writeFileSync(join(project, 'readme-example.mjs'), example!.replaceAll('3001', String(server.port)));
    const child = spawn(process.execPath, ['readme-example.mjs'], { cwd: project, stdio: 'ignore' });
    try {
      const base = `http://localhost:${server.port}`;
      let denied: Response | undefined;
      for (let i = 0; i < 100 && !denied; i++) denied = await fetch(`${base}/mcp`).catch(() => new Promise<undefined>((resolve) => setTimeout(resolve, 100)));
      assert.equal(denied!.status, 401);
      assert.equal(denied!.headers.get('www-authenticate'), `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp", scope="todo:read"`);
      const metadata = (await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
      assert.equal(metadata.resource, `${base}/mcp`);
      assert.deepEqual(metadata.authorization_servers, ['http://localhost:9000']);
      const forged = await fetch(`${base}/mcp`, { headers: { authorization: 'Bearer not-a-token' } });
      assert.equal(forged.status, 401);
      assert.match(forged.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    } finally {
      child.kill();
    }
  });

  it('npx mandate --help prints the usage and exits 0 (the installed bin, never a download)', async () => {
    const { stdout } = await npm(['--no', '--', 'mandate', '--help'], project, 30_000, 'npx');
    assert.match(stdout, /^Usage:/m);
    assert.match(stdout, /mandate demo/);
  });
});
