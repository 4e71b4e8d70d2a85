import { html } from 'hono/html';
import { chainOf, chainPicture, type ChainNames } from './chain.ts';
import { when } from './layout.ts';

/** One approval as `transactions.list` returns it (the fields the page shows). */
interface ApprovalItem {
  id: string;
  status: 'pending' | 'approved' | 'denied' | 'used' | 'expired';
  user: { username: string | null; sub: string };
  client_id: string;
  act: string[];
  resource: string;
  tool: string;
  summary: string;
  details: Record<string, unknown> | null;
  created_at: number;
  expires_at: number;
  decided_at: number | null;
  decided_how: 'password' | 'totp' | null;
  used_at: number | null;
}

export const APPROVAL_STATUSES = ['pending', 'approved', 'denied', 'used', 'expired'] as const;

/** Badge colours: waiting (warn), approved (ok), denied (bad), done or lapsed (neutral). */
const BADGE: Record<ApprovalItem['status'], string> = { pending: 'risk', approved: 'on', denied: 'denied', used: 'agent', expired: 'agent' };

const enc = encodeURIComponent;

/** The chain of an approval drawn as the audit page draws a token's: the user, the agents (oldest first), the resource. */
const chain = (t: ApprovalItem, names: ChainNames, adminResource: string) =>
  chainPicture(chainOf({ type: 'transaction', sub: t.user.sub, client_id: t.client_id, data: { actor_chain: t.act, resource: t.resource } }, names, adminResource));

const detailText = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

function outcome(t: ApprovalItem) {
  if (t.used_at !== null) return html`used ${when(t.used_at)}`;
  if (t.decided_at !== null) return html`${t.status === 'denied' ? 'denied' : 'approved'} ${when(t.decided_at)}${t.decided_how ? html` <span class="muted">(${t.decided_how})</span>` : ''}`;
  return html`<span class="muted">expires ${when(t.expires_at)}</span>`;
}

/** The high-risk approvals, newest first, with a filter by status and user; read-only. */
export function approvalsPage(q: Record<string, string>, result: { items: ApprovalItem[]; next_cursor: string | null }, names: ChainNames, adminResource: string) {
  const kept = new URLSearchParams(Object.entries(q).filter(([k, v]) => k !== 'cursor' && v !== ''));
  return html`<p class="muted">Tool calls that agents asked a person to approve, one call each (high-risk actions). Read-only: only the person decides, on the approval page.</p>
<form method="get" action="/console/approvals" class="panel row" id="approvals-search">
<div><label for="a-status">Status</label><select id="a-status" name="status">
${[['', 'any'], ...APPROVAL_STATUSES.map((s) => [s, s])].map(([v, l]) => html`<option value="${v}"${(q.status ?? '') === v ? html` selected` : ''}>${l}</option>`)}
</select></div>
<div><label for="a-user">User (username)</label><input type="text" id="a-user" name="user" value="${q.user ?? ''}" size="14"></div>
<div><label for="a-tool">Tool</label><input type="text" id="a-tool" name="tool" value="${q.tool ?? ''}" size="12"></div>
<button type="submit" class="primary small">Filter</button>
</form>
<table id="approvals"><thead><tr><th>Requested</th><th class="nowrap">Status</th><th class="nowrap">User</th><th>Action</th><th>Delegation chain</th><th>Outcome</th></tr></thead><tbody>
${result.items.map(
  (t) =>
    html`<tr data-id="${t.id}" data-status="${t.status}"><td class="mono">${when(t.created_at)}</td><td class="nowrap"><span class="badge ${BADGE[t.status]} status">${t.status}</span></td><td class="nowrap">${
      t.user.username ? html`<a href="/console/users/${enc(t.user.username)}">${t.user.username}</a>` : html`<span class="mono">${t.user.sub}</span>`
    }</td><td><bdi class="summary">${t.summary}</bdi><div class="muted">tool <code>${t.tool}</code> · <a href="/console/audit?type=transaction.*&amp;tool=${enc(t.tool)}&amp;subject=${enc(t.user.sub)}">events</a></div>${
      t.details && Object.keys(t.details).length > 0
        ? html`<div class="muted details">${Object.entries(t.details).map(([k, v], i) => html`${i > 0 ? ' · ' : ''}${k}: <bdi>${detailText(v)}</bdi>`)}</div>`
        : ''
    }<div class="muted mono">${t.id}</div></td><td>${chain(t, names, adminResource)}</td><td>${outcome(t)}</td></tr>`,
)}
${result.items.length === 0 ? html`<tr><td colspan="6" class="muted">No approvals.</td></tr>` : ''}
</tbody></table>${result.next_cursor ? html`<p class="pager"><a id="next-page" href="/console/approvals?${kept.toString()}${kept.size > 0 ? '&' : ''}cursor=${enc(result.next_cursor)}">Next page →</a></p>` : ''}`;
}
