import type { Context, Hono } from 'hono';
import { html } from 'hono/html';
import { ADMIN_OPERATIONS as ops, AdminError } from '../../admin/index.ts';
import type { Admin } from './index.ts';
import { csrfField, when } from './layout.ts';

/**
 * The console's Tool pins page (issue 18, docs/gateway.md "Tool pinning"): the tool definitions
 * gateways reported that wait for a decision, each with what changed (the description before and
 * after, the schemas), the injection heuristic's flags, and Approve / Reject buttons that name the
 * hash shown — a definition that changed again since the page was read is refused (409).
 */

type Pin = Awaited<ReturnType<typeof ops.listToolPins.run>>['items'][number];

const STATUSES = ['waiting', 'changed', 'new', 'rejected', 'pinned'] as const;
const BADGE: Record<Pin['status'], string> = { pinned: 'on', changed: 'risk', new: 'risk', rejected: 'denied' };
const enc = encodeURIComponent;
const json = (value: unknown) => (value === null || value === undefined ? '—' : JSON.stringify(value, null, 2));
const text = (definition: Record<string, unknown> | null, field: string) => (definition && typeof definition[field] === 'string' ? (definition[field] as string) : '—');

function diff(pin: Pin) {
  if (!pin.pending_definition) return html`<span class="muted">nothing waiting</span>`;
  const fields = pin.changed_fields.length ? pin.changed_fields : ['(new tool)'];
  return html`<div class="muted">changed: <span class="changed-fields">${fields.join(', ')}</span></div>
<div class="before"><span class="muted">before</span> <bdi>${text(pin.approved_definition, 'description')}</bdi></div>
<div class="after"><span class="muted">after</span> <bdi>${text(pin.pending_definition, 'description')}</bdi></div>
<details><summary>Definitions</summary><div class="row"><pre class="mono">${json(pin.approved_definition)}</pre><pre class="mono">${json(pin.pending_definition)}</pre></div></details>`;
}

function decision(pin: Pin, csrf: string) {
  if (!pin.pending_hash || pin.status === 'pinned') return '';
  const fields = html`${csrfField(csrf)}<input type="hidden" name="resource" value="${pin.resource}"><input type="hidden" name="upstream" value="${pin.upstream}"><input type="hidden" name="tool" value="${pin.tool}"><input type="hidden" name="hash" value="${pin.pending_hash}">`;
  return html`<form method="post" action="/console/tool-pins" class="inline">${fields}<button type="submit" class="primary small" name="action" value="approve">Approve</button></form>${
    pin.status !== 'rejected' ? html` <form method="post" action="/console/tool-pins" class="inline">${fields}<button type="submit" class="danger small" name="action" value="reject">Reject</button></form>` : ''
  }`;
}

export function toolPinsPage(q: Record<string, string>, result: { items: Pin[]; next_cursor: string | null }, csrf: string) {
  const status = q.status || 'waiting';
  const kept = new URLSearchParams(Object.entries({ ...q, status }).filter(([k, v]) => k !== 'cursor' && k !== 'done' && v !== ''));
  return html`<p class="muted">Tool definitions the gateways' upstreams list, per protected resource. A changed or new tool is hidden (or its calls refused) until approved here. Flags come from a heuristic for text aimed at the model: a hint, not a verdict.</p>
${q.done ? html`<p class="notice" role="status" id="done">${q.done === 'approve' ? 'Approved' : 'Rejected'}: ${q.tool ?? ''}</p>` : ''}
<form method="get" action="/console/tool-pins" class="panel row" id="pins-search">
<div><label for="p-status">Status</label><select id="p-status" name="status">
${STATUSES.map((s) => html`<option value="${s}"${status === s ? html` selected` : ''}>${s}</option>`)}
</select></div>
<div><label for="p-resource">Resource</label><input type="text" id="p-resource" name="resource" value="${q.resource ?? ''}" size="30"></div>
<button type="submit" class="primary small">Filter</button>
</form>
<table id="tool-pins"><thead><tr><th>Tool</th><th class="nowrap">Status</th><th>Change</th><th>Flags</th><th>Decision</th></tr></thead><tbody>
${result.items.map(
  (pin) =>
    html`<tr data-tool="${pin.tool}" data-resource="${pin.resource}" data-status="${pin.status}"><td><code>${pin.tool}</code><div class="muted">${pin.resource}${pin.upstream ? ` · ${pin.upstream}` : ''}</div><div class="muted">reported by ${pin.reported_by} · changed ${when(pin.changed_at)}</div><div class="muted mono">${pin.pending_hash ?? pin.approved_hash}</div></td><td class="nowrap"><span class="badge ${BADGE[pin.status]} status">${pin.status}</span></td><td>${diff(pin)}</td><td class="flags">${
      pin.injection_flags.length ? pin.injection_flags.map((flag) => html`<span class="badge risk">${flag}</span> `) : html`<span class="muted">none</span>`
    }</td><td>${decision(pin, csrf)}</td></tr>`,
)}
${result.items.length === 0 ? html`<tr><td colspan="5" class="muted">No tool pins${status === 'waiting' ? ' waiting' : ''}.</td></tr>` : ''}
</tbody></table>${result.next_cursor ? html`<p class="pager"><a id="next-page" href="/console/tool-pins?${kept.toString()}&cursor=${enc(result.next_cursor)}">Next page →</a></p>` : ''}`;
}

type AdminRoute = (handler: (c: Context, a: Admin) => Promise<Response>) => (c: Context) => Promise<Response>;

/** Mounts GET and POST /tool-pins on the console app, behind its admin wrapper (session, roles, CSRF). */
export function toolPinPages(app: Hono, admin: AdminRoute): void {
  app.get(
    '/tool-pins',
    admin(async (c, a) => {
      const q = c.req.query();
      const status = q.status || 'waiting';
      const result = await a.run(ops.listToolPins, { status, resource: q.resource || undefined, cursor: q.cursor, limit: 50 });
      return a.view('Tool pins', 'tool-pins', toolPinsPage(q, result, a.session.csrf));
    }),
  );
  app.post(
    '/tool-pins',
    admin(async (c, a) => {
      const field = (name: string) => {
        const value = a.form[name];
        return Array.isArray(value) ? value[0] : value;
      };
      const action = field('action');
      if (action !== 'approve' && action !== 'reject') throw new AdminError('invalid_request', 'unknown action');
      const input = { resource: field('resource'), upstream: field('upstream') ?? '', tool: field('tool'), hash: field('hash') };
      await a.run(action === 'approve' ? ops.approveToolPin : ops.rejectToolPin, input);
      return c.redirect(`/console/tool-pins?done=${action}&tool=${enc(input.tool ?? '')}`, 303);
    }),
  );
}
