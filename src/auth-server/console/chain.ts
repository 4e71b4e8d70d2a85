import { html, raw } from 'hono/html';

/** An audit event as the audit query returns it (the fields the picture needs). */
export interface ChainEvent {
  type: string;
  sub: string | null;
  client_id: string | null;
  data: Record<string, unknown> | null;
}

export interface ChainNode {
  kind: 'user' | 'agent' | 'client' | 'resource';
  id: string;
  label: string;
}

/** What the picture names things by: usernames for subjects, agents apart from other clients, resource names. */
export interface ChainNames {
  username(sub: string): string | undefined;
  isAgent(clientId: string): boolean;
  resourceName(id: string): string | undefined;
}

const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
const text = (value: unknown): string | undefined => (typeof value === 'string' && value.length > 0 ? value : undefined);

/**
 * The delegation chain of an audit event, from the person to the API: the user, the client they
 * signed in to, each actor of the `act` chain oldest first (RFC 8693 §4.1 nests the most recent
 * actor outermost; the audit log lists it first), then the resource the token is for. Admin calls
 * read the same way: the admin, any agent acting for them, the client, the admin API.
 * Empty when the event names no such chain.
 */
export function chainOf(event: ChainEvent, names: ChainNames, adminResource: string): ChainNode[] {
  const data = event.data ?? {};
  const clients: string[] = [];
  let user: ChainNode | undefined;
  let resource: string | undefined;
  if (event.type.startsWith('admin.')) {
    const admin = text(data.admin);
    if (!admin) return [];
    user = { kind: 'user', id: event.sub ?? admin, label: admin };
    clients.push(...strings(data.act).reverse());
    const via = text(data.via_client);
    if (via) clients.push(via);
    resource = adminResource;
  } else {
    const subject = text(data.subject) ?? event.sub ?? undefined;
    const chain = strings(data.actor_chain);
    const subjectClient = text(data.subject_client);
    if (subject && subject !== event.client_id && !chain.includes(subject)) {
      user = { kind: 'user', id: subject, label: names.username(subject) ?? subject };
    }
    if (subjectClient) clients.push(subjectClient);
    clients.push(...[...chain].reverse());
    if (chain.length === 0 && event.client_id) clients.push(event.client_id);
    resource = text(data.resource);
  }
  const nodes: ChainNode[] = user ? [user] : [];
  for (const id of clients) {
    // One box per hop: the client the user signed in to is usually the first actor too.
    if (nodes.at(-1)?.id === id) continue;
    nodes.push({ kind: names.isAgent(id) ? 'agent' : 'client', id, label: id });
  }
  if (resource) nodes.push({ kind: 'resource', id: resource, label: resource === adminResource ? 'Admin API' : (names.resourceName(resource) ?? resource) });
  // A picture needs two ends: who, and what (or through whom).
  return nodes.length >= 2 ? nodes : [];
}

const KIND: Record<ChainNode['kind'], string> = { user: 'user', agent: 'agent', client: 'client', resource: 'API' };

/** The chain as boxes joined by arrows (CSS only), readable by screen readers as one sentence. */
export function chainPicture(nodes: ChainNode[]) {
  if (nodes.length === 0) return html``;
  const sentence = nodes.map((n) => `${KIND[n.kind]} ${n.label}`).join(' → ');
  return html`<ol class="chain" role="img" aria-label="Delegation chain: ${sentence}">${nodes.map(
    (n, i) =>
      html`${i > 0 ? raw('<li class="arrow" aria-hidden="true"></li>') : ''}<li class="node ${n.kind}" data-id="${n.id}" title="${n.id}"><small>${KIND[n.kind]}</small>${n.label}</li>`,
  )}</ol>`;
}
