import { parseArgs } from 'node:util';

// Each command's module is imported when it runs, so `mandate --help` (and an agent command) does
// not load the authorization server, the gateway and their dependencies.

const USAGE = `mandate — identity for AI agents and MCP servers

Usage:
  mandate demo [--port-offset N] [--data-dir DIR] [--edge]
                                               run the demo (what \`npm start\` runs); every port
                                               moved by N, its data in DIR (default .mandate/);
                                               --edge: the gateway and the Todo MCP server in
                                               workerd (\`npm run edge\`)
  mandate serve auth --config <file>           run the authorization server
  mandate serve gateway --config <file>        run the MCP security gateway (routes reload on change)
  mandate gateway edge-config <file> [--out <json>] [--strict]
                                               validate the gateway's file for the edge, write the
                                               JSON of the Worker's MANDATE_GATEWAY_CONFIG
  mandate gateway pin <file> --route <path> --out <json>
                                               a snapshot of a route's tools (tool_pins.snapshot)
  mandate gateway pins list|approve|reject     tool pins waiting for approval (docs/gateway.md)
  mandate keys list --config <file>            list signing keys
  mandate keys rotate --config <file> [--now]  add a signing key (published first, signs later)
  mandate hash-password                        read a password (not echoed), print its scrypt hash
  mandate agent <login|whoami|tools|call|chat|tokens|logout>   the sample AI agent (mandate agent --help)
  mandate admin mcp [--url <url>]              the admin MCP server over stdio, as the admin of
                                               MANDATE_ADMIN_ACCESS_TOKEN (or signs in)
  mandate admin token [--scope <scopes>] [--url <admin MCP URL>]
                                               sign the admin in, print an admin access token
`;

const COMMANDS = new Set(['demo', 'serve', 'gateway', 'keys', 'hash-password', 'agent', 'admin']);

/** Runs the CLI and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `mandate <command> --help` (or `-h`, `help`) is a question, not a mistake: usage on stdout, exit 0.
  // The agent and gateway commands have their own usage; the others share this one.
  if (command !== 'agent' && command !== 'gateway' && command !== undefined && COMMANDS.has(command) && (rest[0] === 'help' || rest.some((arg) => arg === '--help' || arg === '-h'))) {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    switch (command) {
      case 'demo':
        return await (await import('./demo.ts')).demoCommand(rest);
      case 'serve':
        return await (await import('./serve.ts')).serveCommand(rest);
      case 'gateway':
        return await (await import('./gateway.ts')).gatewayCommand(rest);
      case 'keys':
        return await (await import('./keys.ts')).keysCommand(rest);
      case 'hash-password':
        return await (await import('./hash-password.ts')).hashPasswordCommand();
      case 'agent':
        return await (await import('./agent.ts')).agentCommand(rest);
      case 'admin':
        return await (await import('./admin.ts')).adminCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    const code = (error as { code?: string }).code;
    if ((error as Error).name === 'ConfigError' || code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(error as Error).message}\n`);
      return 2;
    }
    if (code === 'EADDRINUSE') {
      const { address, port } = error as { address?: string; port?: number };
      process.stderr.write(`mandate: ${address ?? ''}:${port ?? ''} is already in use — is another Mandate (or other server) running there?\n`);
      return 1;
    }
    if (code === 'ECONNREFUSED' && /5432|postgres/i.test(String((error as Error).message))) {
      process.stderr.write(`mandate: cannot reach PostgreSQL at DATABASE_URL (${(error as Error).message})\n`);
      return 1;
    }
    throw error;
  }
}

/** Parses `--config <file>` (and `--now`, for key rotation) plus positionals. */
export function configOption(args: string[]) {
  return parseArgs({ args, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, now: { type: 'boolean' } } });
}
