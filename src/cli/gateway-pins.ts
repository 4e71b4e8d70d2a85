import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.ts';

export const PINS_USAGE = `mandate gateway pins — tool pins at the authorization server (docs/gateway.md, "Tool pinning")

Usage:
  mandate gateway pins list [--status waiting|changed|new|rejected|pinned] [--resource <url>]
  mandate gateway pins approve --resource <url> --tool <name> --hash <pending_hash> [--upstream <name>]
  mandate gateway pins reject  --resource <url> --tool <name> --hash <pending_hash> [--upstream <name>]

Through the admin API (/admin/api/v1/tool-pins), as the admin whose token is in
  MANDATE_ADMIN_ACCESS_TOKEN   (mandate admin token --scope admin:write prints one)
  MANDATE_ISSUER               the authorization server (default http://localhost:9000); or --issuer <url>
approve and reject name the pending_hash that list printed: a definition that changed again since
is refused (409), never approved unseen.
`;

interface Pin {
  resource: string;
  upstream: string;
  tool: string;
  status: string;
  approved_hash: string | null;
  pending_hash: string | null;
  changed_fields: string[];
  injection_flags: string[];
  pending_definition: { description?: unknown } | null;
}

/** The admin API said no (exit 1, its error on stderr). */
class PinsRefused extends Error {}

async function api(issuer: string, token: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${issuer.replace(/\/+$/, '')}/admin/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) throw new PinsRefused(`mandate gateway pins: ${response.status} ${String(json.error ?? '')}: ${String(json.error_description ?? '')}`.trim());
  return json;
}

const line = (pin: Pin) =>
  [
    `${pin.status.padEnd(8)} ${pin.tool}${pin.upstream ? ` (upstream ${pin.upstream})` : ''} on ${pin.resource}`,
    pin.pending_hash ? `  pending_hash ${pin.pending_hash}${pin.approved_hash ? ` (approved ${pin.approved_hash})` : ' (none approved)'}` : `  approved_hash ${pin.approved_hash}`,
    ...(pin.changed_fields.length ? [`  changed: ${pin.changed_fields.join(', ')}`] : []),
    ...(pin.injection_flags.length ? [`  injection flags: ${pin.injection_flags.join(', ')}`] : []),
    ...(pin.pending_definition && typeof pin.pending_definition.description === 'string' ? [`  description: ${JSON.stringify(pin.pending_definition.description)}`] : []),
  ].join('\n');

/** `mandate gateway pins list|approve|reject`: exit 0 done, 2 usage, 1 refused by the server. */
export async function pinsCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    return await pins(args, env);
  } catch (error) {
    if (!(error instanceof PinsRefused)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 1;
  }
}

async function pins(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === undefined || verb === 'help' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(PINS_USAGE);
    return verb === undefined ? 2 : 0;
  }
  const { values } = parseArgs({
    args: rest,
    options: { issuer: { type: 'string' }, status: { type: 'string' }, resource: { type: 'string' }, tool: { type: 'string' }, hash: { type: 'string' }, upstream: { type: 'string' } },
  });
  const issuer = values.issuer ?? env.MANDATE_ISSUER ?? 'http://localhost:9000';
  const token = env.MANDATE_ADMIN_ACCESS_TOKEN;
  if (!token) throw new ConfigError(`mandate gateway pins: set MANDATE_ADMIN_ACCESS_TOKEN (mandate admin token --scope admin:write)\n\n${PINS_USAGE}`);
  if (verb === 'list') {
    const query = new URLSearchParams({ limit: '200', ...(values.status ? { status: values.status } : {}), ...(values.resource ? { resource: values.resource } : {}) });
    const pins: Pin[] = [];
    for (let cursor: string | null = null; ; ) {
      if (cursor) query.set('cursor', cursor);
      const page = await api(issuer, token, 'GET', `/tool-pins?${query}`);
      pins.push(...(page.items as Pin[]));
      cursor = page.next_cursor as string | null;
      if (!cursor) break;
    }
    process.stdout.write(pins.length ? `${pins.map(line).join('\n')}\n` : 'no tool pins\n');
    return 0;
  }
  if (verb !== 'approve' && verb !== 'reject') throw new ConfigError(`mandate gateway pins: unknown subcommand ${verb}\n\n${PINS_USAGE}`);
  if (!values.resource || !values.tool || !values.hash) throw new ConfigError(`mandate gateway pins ${verb}: --resource, --tool and --hash are required\n\n${PINS_USAGE}`);
  const pin = (await api(issuer, token, 'POST', `/tool-pins/${verb}`, { resource: values.resource, upstream: values.upstream ?? '', tool: values.tool, hash: values.hash })) as unknown as Pin;
  process.stdout.write(`${line(pin)}\n`);
  return 0;
}
