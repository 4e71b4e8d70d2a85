import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.mandate/', 'dist/', 'dist-edge/', 'schema/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // The core is runtime-neutral: WebCrypto and fetch only (STYLE.md §6).
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['node:*', 'hono', 'hono/*', 'kysely', 'libsql', 'pg'] }],
    },
  },
  {
    // So is the gateway outside node/ (issue 16: it also runs on Cloudflare Workers): web-standard
    // APIs only; Node's builtins and the packages that need them stay in src/gateway/node/.
    // test/gateway/neutral.test.ts bundles it for a runtime without Node to prove it.
    files: ['src/core/**/*.ts', 'src/gateway/**/*.ts', 'examples/todo-mcp/mcp.ts', 'examples/todo-mcp/worker.ts', 'examples/shared/mcp-results.ts'],
    ignores: ['src/gateway/node/**'],
    rules: {
      'no-restricted-globals': ['error', ...['Buffer', 'process', 'require', '__dirname', '__filename', 'setImmediate', 'global'].map((name) => ({ name, message: 'runtime-neutral code: use web-standard APIs (Uint8Array, TextEncoder, globalThis); Node-only code goes in src/gateway/node/' }))],
    },
  },
  {
    // The Todo MCP server's neutral source and its Worker entry (the Node wrapper is server.ts).
    files: ['src/gateway/**/*.ts', 'examples/todo-mcp/mcp.ts', 'examples/todo-mcp/worker.ts', 'examples/shared/mcp-results.ts'],
    ignores: ['src/gateway/node/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'rate-limiter-flexible', 'ioredis', 'pino', 'prom-client', 'undici', '@hono/node-server', '@hono/node-server/*', 'kysely', 'libsql', '@libsql/*', 'pg'], message: 'runtime-neutral gateway code: Node-only modules belong in src/gateway/node/' },
            { group: ['**/node/*', '../node/*', './node/*'], message: 'the neutral gateway must not import its Node host' },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
