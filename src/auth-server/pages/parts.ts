import { html } from 'hono/html';
import type { PageLook } from './layout.ts';

/**
 * A client as the pages present it. `verified`: configured by the administrators, or described by
 * a metadata document on a host they listed; anything else chose its own name, which the pages
 * quote and mark "unverified".
 */
export interface ClientView {
  id: string;
  name: string;
  verified: boolean;
  /** The host of its client ID metadata document, when it has one. */
  documentHost?: string;
  isAgent: boolean;
}

/**
 * The client's name with its trust mark: quoted and marked when it is self-chosen. The name sits
 * in a <bdi>, so right-to-left text in it cannot reorder the words around it.
 */
export function clientLabel(look: PageLook, client: ClientView, id = 'client-name') {
  const badge = look.text.badge;
  return client.verified
    ? html`<strong><bdi id="${id}">${client.name}</bdi></strong> <span class="badge verified">${badge.verified}</span>`
    : html`<strong>“<bdi id="${id}">${client.name}</bdi>”</strong> <span class="badge unverified" id="${id}-unverified">${badge.unverified}</span>`;
}
