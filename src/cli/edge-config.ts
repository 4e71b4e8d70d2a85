import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadYaml, parseConfig } from '../config/load.ts';
import { gatewayConfigSchema, routeIssuers } from '../config/gateway-schema.ts';

/**
 * `mandate gateway edge-config <gateway.yaml>`: the Node gateway's YAML file compiled to the JSON
 * the gateway Worker reads from its `MANDATE_GATEWAY_CONFIG` binding (docs/edge.md, "Deploying to
 * Cloudflare with wrangler"). Validated with the same schema as `mandate serve gateway` (and as the
 * Worker, which validates it again at its first request); the settings that only the Node gateway
 * has (a listener, a metrics listener, an audit file, a data dir) are left out with a warning, or
 * refused with `--strict`. The JSON is the file as written (defaults are not filled in), compact.
 */

/** The top-level keys the Worker ignores, and what takes their place at the edge. */
export const NODE_ONLY_KEYS = {
  listen: 'the Worker has no listener of its own: it is reached at its workers.dev URL or the routes / custom domain set in wrangler.jsonc',
  admin: 'no /metrics or /healthz at the edge: use Workers Logs and the Workers metrics in the Cloudflare dashboard',
  audit: 'no audit file at the edge: each event is a JSON line on console.log (Workers Logs), and is batched to AUDIT_SINK_URL with GATEWAY_STATE bound',
  data_dir: 'no file system at the edge: the authorization server keys are fetched by each isolate on use, not kept on disk',
} as const;

/** Cloudflare's limit on the size of one variable (vars and secrets alike, Workers limits page). */
export const WORKER_VAR_LIMIT_BYTES = 5 * 1024;

export interface EdgeConfig {
  /** The value of MANDATE_GATEWAY_CONFIG. */
  json: string;
  /** Node-only settings left out, one message each. */
  leftOut: string[];
  /** Warnings that do not stop the build (size). */
  warnings: string[];
  /** The secrets the Worker needs (`wrangler secret put NAME`), sorted. */
  secrets: string[];
}

/** Validates a parsed gateway config (YAML or JSON) for the edge; ConfigError when invalid, or with `strict` when it has Node-only settings. */
export function compileEdgeConfig(raw: unknown, source: string, options: { strict?: boolean } = {}): EdgeConfig {
  const config = parseConfig(gatewayConfigSchema, raw, source);
  const input = { ...(raw as Record<string, unknown>) };
  const leftOut: string[] = [];
  for (const [key, why] of Object.entries(NODE_ONLY_KEYS)) {
    if (key in input) {
      leftOut.push(`${key}: ${why}`);
      delete input[key];
    }
  }
  if (options.strict && leftOut.length > 0) {
    throw new ConfigError(`${source} has settings that do not apply at the edge (--strict; remove them, or leave out --strict to drop them with a warning):\n${leftOut.map((line) => `  ${line}`).join('\n')}`);
  }
  const secrets = new Set<string>();
  let web = false;
  for (const route of config.routes) {
    if (route.kind === 'web') {
      web = true;
      if (route.oidc.client_secret_env) secrets.add(route.oidc.client_secret_env);
      if (route.session.secret_env) secrets.add(route.session.secret_env);
      else secrets.add('MANDATE_WEB_COOKIE_KEY');
      continue;
    }
    for (const named of [...routeIssuers(route).flatMap((entry) => [entry.revocation_list, entry.introspection]), route.mediation, route.approvals]) {
      if (named?.client_secret_env) secrets.add(named.client_secret_env);
    }
  }
  if (web) secrets.add('MANDATE_WEB_IDENTITY_KEY');
  const json = JSON.stringify(input);
  const warnings: string[] = [];
  const bytes = new TextEncoder().encode(json).length;
  if (bytes > WORKER_VAR_LIMIT_BYTES) {
    warnings.push(`the JSON is ${bytes} bytes, over Cloudflare's ${WORKER_VAR_LIMIT_BYTES}-byte limit on one variable: wrangler deploy will refuse it (shorten the file: descriptions, unused routes)`);
  }
  return { json, leftOut, warnings, secrets: [...secrets].sort() };
}

const USAGE = `Usage: mandate gateway edge-config <gateway.yaml> [--out <file>] [--strict]

  Validates the gateway's YAML (or JSON) file with the schema of \`mandate serve gateway\` and writes
  the JSON of the gateway Worker's MANDATE_GATEWAY_CONFIG binding to <file> (default: stdout).
  listen, admin, audit and data_dir do not apply at the edge: left out with a warning on stderr,
  or refused (exit 2) with --strict. Stderr also lists the secrets the Worker needs
  (\`wrangler secret put NAME\`). Deploy with
    npx wrangler deploy -c examples/edge/wrangler.jsonc --var "MANDATE_GATEWAY_CONFIG:$(cat <file>)"
  (docs/edge.md, "Deploying to Cloudflare with wrangler").
`;

/** `mandate gateway <subcommand>`. */
export async function gatewayCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'edge-config') throw new ConfigError(`mandate gateway: unknown subcommand ${sub}\n\n${USAGE}`);
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { out: { type: 'string', short: 'o' }, strict: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new ConfigError(`mandate gateway edge-config: one config file, not ${positionals.length}\n\n${USAGE}`);
  const file = positionals[0]!;
  const compiled = compileEdgeConfig(await loadYaml(file), file, { strict: values.strict ?? false });
  for (const line of compiled.leftOut) process.stderr.write(`warning: left out, ${line}\n`);
  for (const line of compiled.warnings) process.stderr.write(`warning: ${line}\n`);
  if (values.out) {
    writeFileSync(values.out, `${compiled.json}\n`);
    process.stderr.write(`wrote ${values.out} (MANDATE_GATEWAY_CONFIG, ${Buffer.byteLength(compiled.json)} bytes)\n`);
  } else {
    process.stdout.write(`${compiled.json}\n`);
  }
  if (compiled.secrets.length > 0) process.stderr.write(`secrets the Worker needs (wrangler secret put NAME): ${compiled.secrets.join(', ')}\n`);
  return 0;
}
