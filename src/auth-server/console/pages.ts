import { html } from 'hono/html';
import type { AdminError } from '../../admin/index.ts';
import { ADMIN_SCOPES } from '../../admin/scopes.ts';
import type { PageLook } from '../pages/layout.ts';
import { chainOf, chainPicture, type ChainNames } from './chain.ts';
import { csrfField, state, when, type Body } from './layout.ts';
import { SAMPLE_TOKEN, type TryResult } from './try-mapping.ts';

export interface View {
  body: Body;
}

type Page<T> = { items: T[]; next_cursor: string | null };
type Json = Record<string, unknown>;
const enc = encodeURIComponent;

const DONE: Record<string, string> = {
  enable: 'Enabled. Tokens issued before it was disabled stay dead.',
  disable: 'Disabled: its grants and tokens are revoked, and tokens whose chain names it are cut off.',
  expiry: 'Expiry set.',
  'clear-expiry': 'Expiry cleared.',
  owner: 'Owner changed.',
  roles: 'Roles saved.',
  grant: 'Grant revoked: its tokens stop working.',
  consent: 'Consent forgotten and its grants revoked: the next sign-in asks again.',
  totp: 'Authenticator app removed: until the user sets up a new one, approvals ask for their password.',
};

/** What the page says after a write; the page itself shows the item as read back. */
const flash = (done: string | undefined, fallback?: (d: string) => string) => {
  if (!done) return '';
  const text = DONE[done] ?? fallback?.(done);
  return text ? html`<p class="flash" role="status" id="flash">${text}</p>` : '';
};

const pager = (base: string, next: string | null) => (next ? html`<p class="pager"><a id="next-page" href="${base}${base.includes('?') ? '&' : '?'}cursor=${enc(next)}">Next page →</a></p>` : '');

const refused = (error: AdminError) => html`<p class="note warn" role="note">Your roles do not cover this: ${error.message}.</p>`;
const isError = (v: unknown): v is AdminError => v instanceof Error;

interface AgentItem {
  client_id: string;
  client_name: string | null;
  agent_type: string;
  owner: string | null;
  enabled: boolean;
  expires_at: string | null;
  created_at: number;
  first_used_at: number | null;
  source: string;
  disabled_at: number | null;
  tokens_valid_after: number | null;
}

export function agentsPage(result: Page<AgentItem>) {
  return html`<p class="muted">Agents are clients with an identity of their own: disable one and everything it holds stops, everywhere.</p>
<table id="agents"><thead><tr><th>Agent</th><th>Type</th><th>Owner</th><th>State</th><th>Expires</th><th>First used</th><th>Source</th></tr></thead><tbody>
${result.items.map(
  (a) =>
    html`<tr data-id="${a.client_id}"><td><a href="/console/agents/${enc(a.client_id)}">${a.client_name ?? a.client_id}</a><div class="muted mono">${a.client_id}</div></td><td>${a.agent_type}</td><td>${a.owner ?? '—'}</td><td>${state(a.enabled)}</td><td>${a.expires_at ?? 'never'}</td><td>${when(a.first_used_at)}</td><td>${a.source}</td></tr>`,
)}
${result.items.length === 0 ? html`<tr><td colspan="7" class="muted">No agents.</td></tr>` : ''}
</tbody></table>${pager('/console/agents', result.next_cursor)}`;
}

interface AuditItem {
  id: number;
  at: number;
  type: string;
  outcome: 'success' | 'failure';
  client_id: string | null;
  sub: string | null;
  error: string | null;
  reason: string | null;
  data: Json | null;
}

function eventsTable(events: AuditItem[], names: ChainNames, adminResource: string, id = 'events') {
  return html`<table id="${id}"><thead><tr><th>Time</th><th>Event</th><th>Who</th><th>Delegation chain</th><th>Outcome</th></tr></thead><tbody>
${events.map((e) => {
  const data = e.data ?? {};
  const who = typeof data.admin === 'string' ? data.admin : e.sub ? (names.username(e.sub) ?? e.sub) : '—';
  const tool = typeof data.tool === 'string' ? data.tool : undefined;
  return html`<tr data-event="${e.id}"><td class="mono">${when(e.at)}</td><td><code>${e.type}</code>${tool ? html`<div class="muted">tool <code>${tool}</code></div>` : ''}${e.client_id ? html`<div class="muted">client <code>${e.client_id}</code></div>` : ''}</td><td>${who}</td><td>${chainPicture(chainOf(e, names, adminResource))}</td><td>${
    e.outcome === 'success' ? html`<span class="badge on">${typeof data.decision === 'string' ? data.decision : 'success'}</span>` : html`<span class="badge off">refused</span> <span class="fail">${e.error ?? ''}</span>${e.reason ? html`<div class="muted">${e.reason}</div>` : ''}`
  }</td></tr>`;
})}
${events.length === 0 ? html`<tr><td colspan="5" class="muted">No events.</td></tr>` : ''}
</tbody></table>`;
}

export function agentPage(look: PageLook, csrf: string, a: AgentItem, events: Page<AuditItem> | AdminError, names: ChainNames, adminResource: string, done?: string) {
  const post = `/console/agents/${enc(a.client_id)}`;
  return html`${flash(done)}
<div class="panel">
<dl id="agent">
<dt>Client ID</dt><dd class="mono">${a.client_id}</dd>
<dt>Name</dt><dd>${a.client_name ?? '—'}</dd>
<dt>Type</dt><dd>${a.agent_type}</dd>
<dt>State</dt><dd id="agent-state">${state(a.enabled)}${a.disabled_at ? html` <span class="muted">since ${when(a.disabled_at)}</span>` : ''}</dd>
<dt>Owner</dt><dd id="agent-owner">${a.owner ?? '—'}</dd>
<dt>Expires</dt><dd id="agent-expiry">${a.expires_at ?? 'never'}</dd>
<dt>Tokens valid after</dt><dd>${when(a.tokens_valid_after)}</dd>
<dt>Created</dt><dd>${when(a.created_at)}</dd>
<dt>First used</dt><dd>${when(a.first_used_at)}</dd>
<dt>Source</dt><dd>${a.source}${a.source === 'config' ? html` <span class="muted">(owner and expiry set in the file stay the file's)</span>` : ''}</dd>
</dl>
<form method="post" action="${post}" class="inline">${csrfField(csrf)}${
    a.enabled
      ? html`<label class="confirm"><input type="checkbox" name="confirm" value="yes" required id="confirm-disable"> Revoke everything it holds now</label>
<button type="submit" class="danger" name="action" value="disable" id="disable">Disable ${a.client_name ?? a.client_id}</button>`
      : html`<button type="submit" class="primary" name="action" value="enable" id="enable">Enable ${a.client_name ?? a.client_id}</button>`
  }</form>
<p class="muted">Disabling revokes its grants and tokens and cuts off every token whose delegation chain names it; enabling again does not revive them.</p>
</div>
<div class="panel"><h2>Expiry and owner</h2>
<form method="post" action="${post}" class="row">${csrfField(csrf)}
<div><label for="expires_at">Expires at (UTC)</label><input type="datetime-local" id="expires_at" name="expires_at" required></div>
<button type="submit" class="secondary small" name="action" value="expiry">Set expiry</button>
</form>
<form method="post" action="${post}" class="row">${csrfField(csrf)}<button type="submit" class="secondary small" name="action" value="clear-expiry">Never expires</button></form>
<form method="post" action="${post}" class="row">${csrfField(csrf)}
<div><label for="owner">Owner (username)</label><input type="text" id="owner" name="owner" value="${a.owner ?? ''}"></div>
<button type="submit" class="secondary small" name="action" value="owner">Set owner</button>
</form></div>
<h2>Recent events and delegation chains</h2>
${isError(events) ? refused(events) : html`${eventsTable(events.items, names, adminResource, 'agent-events')}<p><a href="/console/audit?agent=${enc(a.client_id)}">All of ${a.client_id}'s events →</a></p>`}
<p class="muted">${look.productName} keeps no list of live tokens: an agent's tokens are the <code>token.issued</code> events above, each with its chain.</p>`;
}

const FILTERS: [string, string][] = [
  ['actor', 'Admin (username)'],
  ['agent', 'Agent'],
  ['subject', 'Subject (sub)'],
  ['client_id', 'Client'],
  ['tool', 'MCP tool'],
  ['type', 'Event type (admin.*)'],
];

export function auditPage(q: Record<string, string>, result: Page<AuditItem>, names: ChainNames, adminResource: string) {
  const kept = new URLSearchParams(Object.entries(q).filter(([k, v]) => k !== 'cursor' && v !== ''));
  return html`<form method="get" action="/console/audit" class="panel" id="audit-search">
<div class="row">
<div><label for="since">From (UTC)</label><input type="datetime-local" id="since" name="since" value="${q.since ?? ''}"></div>
<div><label for="until">Until (UTC)</label><input type="datetime-local" id="until" name="until" value="${q.until ?? ''}"></div>
${FILTERS.map(([name, label]) => html`<div><label for="f-${name}">${label}</label><input type="text" id="f-${name}" name="${name}" value="${q[name] ?? ''}" size="14"></div>`)}
<div><label for="decision">Decision</label><select id="decision" name="decision">
${[['', 'any'], ['success', 'allowed'], ['failure', 'refused']].map(([v, l]) => html`<option value="${v}"${q.decision === v ? html` selected` : ''}>${l}</option>`)}
</select></div>
<button type="submit" class="primary small">Search</button>
</div></form>
${eventsTable(result.items, names, adminResource, 'audit-events')}
${pager(`/console/audit?${kept.toString()}`, result.next_cursor)}`;
}

interface UserItem {
  sub: string;
  username: string;
  name: string | null;
  email: string | null;
  roles: string[];
  source: string;
  has_password: boolean;
  totp: 'enrolled' | 'not enrolled';
  created_at: number;
}

const roles = (list: string[]) => (list.length === 0 ? html`<span class="muted">none</span>` : list.map((r) => html`<code>${r}</code> `));

export function usersPage(result: Page<UserItem>) {
  return html`<table id="users"><thead><tr><th>Username</th><th>Name</th><th>Email</th><th>Admin roles</th><th>Source</th></tr></thead><tbody>
${result.items.map((u) => html`<tr><td><a href="/console/users/${enc(u.username)}">${u.username}</a></td><td>${u.name ?? '—'}</td><td>${u.email ?? '—'}</td><td>${roles(u.roles)}</td><td>${u.source}</td></tr>`)}
</tbody></table>${pager('/console/users', result.next_cursor)}`;
}

interface GrantItem {
  id: string;
  client_id: string;
  resource: string;
  scope: string;
  created_at: number;
  expires_at: number;
}
interface ConsentItem {
  client_id: string;
  resource: string;
  scope: string;
  created_at: number;
}

export function userPage(csrf: string, u: UserItem, grants: Page<GrantItem> | AdminError, consents: Page<ConsentItem> | AdminError, done?: string) {
  const base = `/console/users/${enc(u.username)}`;
  return html`${flash(done)}
<div class="panel"><dl id="user">
<dt>Username</dt><dd>${u.username}</dd><dt>Subject</dt><dd class="mono">${u.sub}</dd><dt>Name</dt><dd>${u.name ?? '—'}</dd><dt>Email</dt><dd>${u.email ?? '—'}</dd>
<dt>Admin roles</dt><dd id="user-roles">${roles(u.roles)}</dd><dt>Source</dt><dd>${u.source}</dd><dt>Created</dt><dd>${when(u.created_at)}</dd>
<dt>TOTP</dt><dd id="user-totp">${u.totp}</dd>
</dl>${
  u.totp === 'enrolled'
    ? html`<form method="post" action="${base}/totp">${csrfField(csrf)}<div class="actions"><button type="submit" class="secondary small" id="reset-totp">Reset TOTP (lost phone)</button></div></form>`
    : ''
}</div>
<div class="panel"><h2>Admin roles</h2>
${
  // A user of the configuration file is changed there: no form that could only fail.
  u.source === 'config'
    ? html`<p class="muted" id="roles-from-config">This user comes from the configuration file: its roles are set there.</p>`
    : html`<form method="post" action="${base}/roles">${csrfField(csrf)}
<div class="row">${ADMIN_SCOPES.map((r) => html`<label><input type="checkbox" name="roles" value="${r}"${u.roles.includes(r) ? html` checked` : ''}> <code>${r}</code></label>`)}</div>
<div class="actions"><button type="submit" class="primary small" id="save-roles">Save roles</button></div></form>`
}</div>
<h2>Active grants</h2>
${
  isError(grants)
    ? refused(grants)
    : html`<table id="grants"><thead><tr><th>Client</th><th>Resource</th><th>Scope</th><th>Since</th><th>Until</th><th></th></tr></thead><tbody>
${grants.items.map(
  (g) =>
    html`<tr><td><code>${g.client_id}</code></td><td>${g.resource}</td><td><code>${g.scope}</code></td><td>${when(g.created_at)}</td><td>${when(g.expires_at)}</td><td><form method="post" action="${base}/grants" class="inline">${csrfField(csrf)}<input type="hidden" name="grant_id" value="${g.id}"><button type="submit" class="secondary small">Revoke</button></form></td></tr>`,
)}${grants.items.length === 0 ? html`<tr><td colspan="6" class="muted">No active grants.</td></tr>` : ''}</tbody></table>`
}
<h2>Consents</h2>
${
  isError(consents)
    ? refused(consents)
    : html`<table id="consents"><thead><tr><th>Client</th><th>Resource</th><th>Scope</th><th>Given</th><th></th></tr></thead><tbody>
${consents.items.map(
  (k) =>
    html`<tr><td><code>${k.client_id}</code></td><td>${k.resource}</td><td><code>${k.scope}</code></td><td>${when(k.created_at)}</td><td><form method="post" action="${base}/consents" class="inline">${csrfField(csrf)}<input type="hidden" name="client_id" value="${k.client_id}"><input type="hidden" name="resource" value="${k.resource}"><button type="submit" class="secondary small">Revoke</button></form></td></tr>`,
)}${consents.items.length === 0 ? html`<tr><td colspan="5" class="muted">No consents.</td></tr>` : ''}</tbody></table>`
}`;
}

interface ClientItem {
  client_id: string;
  client_name: string | null;
  source: string;
  kind: string;
  redirect_uris: string[];
  grant_types: string[];
  token_endpoint_auth_method: string;
  scope: string | null;
  default_resource: string | null;
  sub_profile?: string | null;
  dpop_bound_access_tokens?: boolean;
  workload_identity?: { issuer: string; subject: string; claims: Record<string, string | number | boolean> } | null;
  enabled: boolean;
  created_at: number;
  first_used_at: number | null;
}

export function clientsPage(result: Page<ClientItem>) {
  return html`<table id="clients"><thead><tr><th>Client</th><th>Kind</th><th>Source</th><th>Authentication</th><th>Grant types</th><th>State</th></tr></thead><tbody>
${result.items.map(
  (k) =>
    html`<tr><td><a href="/console/clients/${enc(k.client_id)}">${k.client_name ?? k.client_id}</a><div class="muted mono">${k.client_id}</div></td><td>${k.kind}</td><td>${k.source}</td><td><code>${k.token_endpoint_auth_method}</code></td><td>${k.grant_types.map((g) => html`<code>${g.replace('urn:ietf:params:oauth:grant-type:', '')}</code> `)}</td><td>${state(k.enabled)}</td></tr>`,
)}</tbody></table>${pager('/console/clients', result.next_cursor)}`;
}

export function clientPage(csrf: string, k: ClientItem, done?: string) {
  return html`${flash(done)}<div class="panel"><dl id="client">
<dt>Client ID</dt><dd class="mono">${k.client_id}</dd><dt>Name</dt><dd>${k.client_name ?? '—'}</dd><dt>Kind</dt><dd>${k.kind}${k.kind === 'agent' ? html` (<a href="/console/agents/${enc(k.client_id)}">agent page</a>)` : ''}</dd>
<dt>Source</dt><dd>${k.source}</dd><dt>State</dt><dd id="client-state">${state(k.enabled)}</dd>
<dt>Authentication</dt><dd><code>${k.token_endpoint_auth_method}</code></dd><dt>Grant types</dt><dd>${k.grant_types.map((g) => html`<code>${g}</code> `)}</dd>
<dt>Redirect URIs</dt><dd>${k.redirect_uris.length ? k.redirect_uris.map((r) => html`<code>${r}</code>`) : '—'}</dd>
<dt>Workload identity</dt><dd id="client-workload">${k.workload_identity ? html`<code>${k.workload_identity.subject}</code> of <code>${k.workload_identity.issuer}</code>${Object.keys(k.workload_identity.claims).length ? html` with <code>${JSON.stringify(k.workload_identity.claims)}</code>` : ''}` : '—'}</dd>
<dt>DPoP-bound tokens</dt><dd id="client-dpop">${k.dpop_bound_access_tokens ? 'required (requests without a DPoP proof are refused)' : 'optional'}</dd><dt>Entity profile</dt><dd id="client-profile">${k.sub_profile ? html`<code>${k.sub_profile}</code>` : html`default (<code>${k.kind === 'agent' ? 'ai_agent' : 'service'}</code>)`}</dd>
<dt>Scope</dt><dd>${k.scope ?? 'any'}</dd><dt>Default resource</dt><dd>${k.default_resource ?? '—'}</dd><dt>Created</dt><dd>${when(k.created_at)}</dd><dt>First used</dt><dd>${when(k.first_used_at)}</dd>
</dl>
<form method="post" action="/console/clients/${enc(k.client_id)}">${csrfField(csrf)}${
    k.enabled ? html`<button type="submit" class="danger" name="action" value="disable" id="disable">Disable</button>` : html`<button type="submit" class="primary" name="action" value="enable" id="enable">Enable</button>`
  }</form></div>`;
}

interface ResourceItem {
  definition: Json;
  source: string;
  updated_at: number;
}

export function resourcesPage(result: Page<ResourceItem>) {
  return html`<table id="resources"><thead><tr><th>Resource</th><th>Scopes</th><th>Claim mappings</th><th>Source</th></tr></thead><tbody>
${result.items.map((r) => {
  const d = r.definition;
  const scopes = (d.scopes as { name: string }[] | undefined) ?? [];
  return html`<tr><td><a href="/console/resource?id=${enc(String(d.id))}">${String(d.name ?? d.id)}</a><div class="muted mono">${String(d.id)}</div></td><td>${scopes.map((s) => html`<code>${s.name}</code> `)}</td><td>${Object.keys((d.claims as Json | undefined) ?? {}).length}</td><td>${r.source}</td></tr>`;
})}</tbody></table>${pager('/console/resources', result.next_cursor)}`;
}

export function resourcePage(csrf: string, r: ResourceItem, tryOut: { tried?: TryResult; sample?: string; expression?: string }) {
  const d = r.definition;
  const scopes = (d.scopes as { name: string; description?: string; high_risk?: boolean }[] | undefined) ?? [];
  const claims = Object.entries((d.claims as Record<string, string> | undefined) ?? {});
  const exchange = (d.exchange as Json | undefined) ?? {};
  const tried = tryOut.tried;
  return html`<div class="panel"><dl>
<dt>Identifier</dt><dd class="mono">${String(d.id)}</dd><dt>Source</dt><dd>${r.source}</dd><dt>Token format</dt><dd>${String(d.token_format ?? 'jwt')}</dd>
<dt>May act</dt><dd>${d.may_act ? html`<code>${JSON.stringify(d.may_act)}</code>` : '—'}</dd>
<dt>Exchange</dt><dd><code>${JSON.stringify(exchange)}</code></dd><dt>Updated</dt><dd>${when(r.updated_at)}</dd>
</dl></div>
<h2>Scopes</h2>
<table id="scopes"><thead><tr><th>Scope</th><th>Description</th><th>Risk</th></tr></thead><tbody>
${scopes.map((s) => html`<tr><td><code>${s.name}</code></td><td>${s.description ?? '—'}</td><td>${s.high_risk ? html`<span class="badge risk">high</span>` : ''}</td></tr>`)}
${scopes.length === 0 ? html`<tr><td colspan="3" class="muted">Identity only: no scopes.</td></tr>` : ''}</tbody></table>
<h2>Claim mappings (CEL)</h2>
<table id="mappings"><thead><tr><th>Claim</th><th>Expression</th></tr></thead><tbody>
${claims.map(([name, source]) => html`<tr><td><code>${name}</code></td><td><code>${source}</code></td></tr>`)}
${claims.length === 0 ? html`<tr><td colspan="2" class="muted">No mappings.</td></tr>` : ''}</tbody></table>
<form method="post" action="/console/resource/try" class="panel" id="try-mapping">${csrfField(csrf)}<input type="hidden" name="id" value="${String(d.id)}">
<h2>Try this mapping on a sample token</h2>
<p class="muted">Paste a token's claims (or the variables <code>subject</code>, <code>actor</code>, <code>client</code>, <code>user</code>, <code>request</code>, <code>token</code>); the mappings run in the CEL engine tokens are issued with.</p>
<label for="sample">Sample token (JSON)</label><textarea id="sample" name="sample" rows="8">${tryOut.sample ?? SAMPLE_TOKEN}</textarea>
<label for="expression">And an expression of your own (optional)</label><textarea id="expression" name="expression" rows="2">${tryOut.expression ?? ''}</textarea>
<div class="actions"><button type="submit" class="primary small" id="try">Evaluate</button></div>
${
  tried === undefined
    ? ''
    : 'error' in tried
      ? html`<p class="error" role="alert" id="try-error">${tried.error}</p>`
      : html`<table id="try-results"><thead><tr><th>Claim</th><th>Value</th></tr></thead><tbody>${tried.results.map(
          (t) => html`<tr data-claim="${t.claim}"><td><code>${t.claim}</code></td><td>${t.error ? html`<span class="fail">${t.error}</span>` : html`<code class="value">${t.value}</code>`}</td></tr>`,
        )}${tried.results.length === 0 ? html`<tr><td colspan="2" class="muted">Nothing to evaluate: no mappings and no expression.</td></tr>` : ''}</tbody></table>`
}
</form>`;
}

interface AgreementItem {
  id: string;
  name: string;
  version: number;
  text: string;
  reconsent_days?: number;
}

export function agreementsPage(result: { items: AgreementItem[] }) {
  return html`<p class="muted">Agreements come from the configuration file; changing one is a change there (a new version asks every user again).</p>
${result.items.map((a) => html`<div class="panel agreement-item" data-id="${a.id}"><h2>${a.name} <span class="badge agent">version ${a.version}</span></h2><p class="muted mono">${a.id}${a.reconsent_days ? ` · asked again every ${a.reconsent_days} days` : ''}</p><div class="agreement">${a.text}</div></div>`)}
${result.items.length === 0 ? html`<p class="muted" id="no-agreements">No agreements are configured.</p>` : ''}`;
}

export function keysPage(csrf: string, result: { items: { kid: string; created_at: number; use_from: number; state: string }[] }, done?: string) {
  return html`${flash(done, (kid) => `Rotated: key ${kid} is published now and signs once verifiers have had time to fetch it.`)}
<table id="keys"><thead><tr><th>Key ID</th><th>State</th><th>Created</th><th>Signs from</th></tr></thead><tbody>
${result.items.map((k) => html`<tr data-kid="${k.kid}"><td class="mono">${k.kid}</td><td><span class="badge ${k.state === 'active' ? 'on' : 'agent'}">${k.state}</span></td><td>${when(k.created_at)}</td><td>${when(k.use_from)}</td></tr>`)}
</tbody></table>
<form method="post" action="/console/keys/rotate">${csrfField(csrf)}<button type="submit" class="primary" id="rotate">Rotate signing keys</button></form>
<p class="muted">Public facts only: key material never leaves the server.</p>`;
}

interface UsageReport {
  days: { day: string; tokens_issued: number; exchanges: number; refusals: number }[];
  totals: { tokens_issued: number; exchanges: number; refusals: number };
}

/** Tokens issued, exchanges and refusals per UTC day; bars are <meter> elements (no style attributes under the CSP). */
export function usagePage(q: Record<string, string>, report: UsageReport) {
  const max = Math.max(1, ...report.days.flatMap((d) => [d.tokens_issued, d.refusals]));
  const bar = (n: number) => html`<meter min="0" max="${max}" value="${n}"></meter>${n}`;
  return html`<form method="get" action="/console/usage" class="panel row">
<div><label for="from">From (UTC day)</label><input type="text" id="from" name="from" placeholder="YYYY-MM-DD" value="${q.from ?? ''}" size="11"></div>
<div><label for="to">To</label><input type="text" id="to" name="to" placeholder="YYYY-MM-DD" value="${q.to ?? ''}" size="11"></div>
<button type="submit" class="primary small">Show</button></form>
<table id="usage"><thead><tr><th>Day</th><th>Tokens issued</th><th>Of which exchanges</th><th>Refusals</th></tr></thead><tbody>
${report.days.map((d) => html`<tr data-day="${d.day}"><td class="mono">${d.day}</td><td>${bar(d.tokens_issued)}</td><td>${bar(d.exchanges)}</td><td>${bar(d.refusals)}</td></tr>`)}
<tr id="usage-totals"><th>Total</th><th>${report.totals.tokens_issued}</th><th>${report.totals.exchanges}</th><th>${report.totals.refusals}</th></tr>
</tbody></table>
<p class="muted">Counted from the audit log (<code>reports.usage</code>).</p>`;
}
