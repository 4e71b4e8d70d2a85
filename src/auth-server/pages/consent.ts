import type { Context } from 'hono';
import { html } from 'hono/html';
import { decisionForm, renderPage, type PageLook } from './layout.ts';
import { clientLabel, type ClientView } from './parts.ts';
import { joinList } from './strings.ts';

export interface ConsentScope {
  name: string;
  description?: string;
  highRisk: boolean;
  /** High risk asked by an unverified client: granted only when the user ticks it. */
  needsTick: boolean;
}

export interface ConsentView {
  action: string;
  csrf: string;
  /** The client that asks, and that will hold the token. */
  client: ClientView;
  username: string;
  /** Where the permissions are used: the resource, or for an agent's own token the resources it can exchange it into. */
  places: { id: string; name: string }[];
  scopes: ConsentScope[];
  /** Another client that may act with the token (RFC 8693 may_act naming someone other than the client). */
  delegate?: ClientView;
  /** True when no scope is more than OpenID Connect identity. */
  identityOnly: boolean;
}

/** Says plainly who asks, whether anyone vouches for it, who will act, where, and with which permissions, then asks. */
export function consentPage(c: Context, look: PageLook, view: ConsentView) {
  const t = look.text.consent;
  const badge = look.text.badge;
  const { client } = view;
  const trustNote = client.verified
    ? html`<p class="note" id="trust-note">${client.documentHost ? t.verifiedDocument(html`<strong>${client.documentHost}</strong>`) : t.verifiedConfig}</p>`
    : html`<p class="note warn" id="trust-note">${t.unverified}</p>`;
  const places = joinList(view.places.map((p) => html`${p.name}`));
  const ticks = view.scopes.filter((s) => s.needsTick).length;
  const granted = view.scopes.filter((s) => !s.needsTick);
  const actorName = client.verified ? html`<strong><bdi>${client.name}</bdi></strong>` : html`<strong>“<bdi>${client.name}</bdi>”</strong>`;
  const permissions = html`<h2>${t.permissions}</h2>
${
  view.scopes.length === 0
    ? html`<p class="muted" id="scopes">${t.noPermissions}</p>`
    : html`<ul class="scopes" id="scopes">
${view.scopes.map(
  (s) => html`<li${s.highRisk ? html` class="high"` : ''} data-scope="${s.name}"><span>${s.description ?? s.name}</span>${s.highRisk ? html` <span class="badge risk">${badge.highRisk}</span>` : ''}${s.description ? html`<code>${s.name}</code>` : ''}${
    s.needsTick ? html`<label><input type="checkbox" name="high_risk" value="${s.name}"> ${t.highRiskTick}</label>` : ''
  }</li>`,
)}
</ul>`
}
<p class="summary" id="summary">${
      view.identityOnly
        ? t.summaryIdentityOnly(actorName)
        : t.summary({ actor: actorName, places: html`<strong>${places}</strong>`, count: granted.length, highRisk: granted.filter((s) => s.highRisk).length })
    }${ticks > 0 ? html` ${t.highRiskNote}` : ''}</p>`;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.heading(clientLabel(look, client))}</h1>
${trustNote}
<dl>
  <dt>${t.actor}</dt>
  <dd id="actor">${actorName}${client.isAgent ? html` <span class="badge agent" id="actor-agent">${badge.agent}</span>` : ''}<code>${client.id}</code></dd>
  <dt>${t.actsAt}</dt>
  <dd><strong id="resource-name">${places}</strong>${view.places.map((p) => html`<code>${p.id}</code>`)}</dd>
</dl>
<p class="muted" id="signed-in-as">${t.signedInAs(html`<strong>${view.username}</strong>`)}</p>
${view.delegate ? html`<p class="note" id="delegate">${t.passesOn(clientLabel(look, view.delegate, 'delegate-name'))}</p>` : ''}
${decisionForm(view.action, view.csrf, { no: ['deny', t.deny], yes: ['allow', t.allow] }, permissions)}`,
  );
}
