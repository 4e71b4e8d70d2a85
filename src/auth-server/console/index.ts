import { Hono, type Context } from 'hono';
import { html } from 'hono/html';
import type { z } from 'zod';
import { ADMIN_OPERATIONS, AdminError, adminResourceId, invoke, type Caller, type Operation } from '../../admin/index.ts';
import { randomToken } from '../../core/encoding.ts';
import type { ServerContext } from '../context.ts';
import { pageLook, type PageLook } from '../pages/layout.ts';
import { agentPage, agentsPage, agreementsPage, auditPage, clientPage, clientsPage, keysPage, resourcePage, resourcesPage, usagePage, userPage, usersPage, type View } from './pages.ts';
import { approvalsPage } from './approvals.ts';
import { toolPinPages } from './tool-pins.ts';
import { consolePage as pageFor, plainPage, type Status } from './layout.ts';
import { beginSignIn, consoleClientKeeper, csrfHolds, endSession, finishSignIn, loadSession, sessionCaller, type ConsoleSession, type InnerFetch } from './session.ts';
import { tryMappings } from './try-mapping.ts';

export { CONSOLE_CLIENT_ID } from './session.ts';

type Form = Record<string, string | string[]>;

/** What a console handler works with: the admin, their session, the POSTed form, operations. */
export interface Admin {
  caller: Caller;
  session: ConsoleSession;
  form: Form;
  run<I extends z.ZodType, O extends z.ZodType>(op: Operation<I, O>, input: unknown): Promise<z.output<O>>;
  view(title: string, area: string, body: View['body'], status?: Status): Response | Promise<Response>;
}

const one = (form: Form, name: string): string | undefined => {
  const v = form[name];
  return Array.isArray(v) ? v[0] : v;
};
const enc = encodeURIComponent;

/** datetime-local (read as UTC, as the form says) or ISO 8601 → ISO 8601; empty → undefined. */
function isoFrom(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const withZone = /[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value.length === 16 ? `${value}:00` : value}Z`;
  const ms = Date.parse(withZone);
  if (Number.isNaN(ms)) throw new AdminError('invalid_request', `not a time: ${value}`);
  return new Date(ms).toISOString();
}

/**
 * The web console at `<issuer>/console` (docs/console.md): server-rendered pages over the admin
 * operations, signed in through this authorization server (the console is the public client
 * `mandate-console`, code + PKCE), the admin's tokens kept server-side. No script on any page.
 */
export function consoleApp(ctx: ServerContext, innerFetch: InnerFetch): Hono {
  const app = new Hono();
  const look: PageLook = pageLook(ctx.config.branding);
  const ensureClient = consoleClientKeeper(ctx);
  const adminResource = adminResourceId(ctx.issuer);

  const notAdmin = (c: Context, description: string) =>
    plainPage(
      c,
      look,
      'You are not an administrator',
      html`<p class="error" role="alert" id="not-admin">Your account holds no administrative role, so the console has nothing to show you.</p>
<p class="muted">${description}</p>
<p>Ask an administrator for a role (<code>admin:read</code>, <code>admin:write</code>, or one area's), then <a href="/console/login?switch=1">sign in again</a>.</p>`,
      403,
    );

  const failure = (c: Context, error: AdminError) =>
    plainPage(
      c,
      look,
      error.code === 'insufficient_scope' ? 'Not allowed' : error.code === 'not_found' ? 'Not found' : 'That did not work',
      html`<p class="error" role="alert">${error.message}</p><p class="muted">Code: <code id="error-code">${error.code}</code></p><p><a href="/console/agents">Back to the console</a></p>`,
      (error.status === 428 ? 412 : error.status) as Status,
    );

  /** Every signed-in page: session → admin (roles read now) → CSRF on POST → handler; admin errors become pages. */
  const admin = (handler: (c: Context, a: Admin) => Promise<Response>) => async (c: Context) => {
    const session = await loadSession(ctx, c);
    if (!session) return c.redirect('/console', 303);
    const requestId = randomToken(8);
    const who = await sessionCaller(ctx, c, session, innerFetch, requestId);
    if ('refused' in who) {
      await endSession(ctx, c, undefined, innerFetch);
      return c.redirect('/console?expired=1', 303);
    }
    const { caller } = who;
    if (caller.scopes.length === 0) return notAdmin(c, `${caller.username} holds no admin role any more.`);
    let form: Form = {};
    if (c.req.method === 'POST') {
      form = (await c.req.parseBody({ all: true })) as Form;
      if (!csrfHolds(session, one(form, 'csrf'))) {
        ctx.audit.record({
          at: ctx.now(),
          type: 'console.refused',
          outcome: 'failure',
          sub: caller.sub,
          error: 'invalid_request',
          reason: 'CSRF token missing or wrong',
          data: { admin: caller.username, front_end: 'console', path: c.req.path, request_id: requestId, session_id: session.sid },
        });
        return plainPage(c, look, 'Request refused', html`<p class="error" role="alert">This form was not sent from the console page (its CSRF token is missing or wrong). Nothing was changed.</p><p class="muted">Code: <code id="error-code">invalid_request</code></p><p><a href="/console/agents">Back to the console</a></p>`, 403);
      }
    }
    const a: Admin = {
      caller,
      session,
      form,
      run: (op, input) => invoke(ctx, caller, op, input),
      view: (title, area, body, status) => pageFor(c, look, { title, area, username: caller.username, csrf: session.csrf, body, status }),
    };
    try {
      return await handler(c, a);
    } catch (error) {
      if (error instanceof AdminError) return failure(c, error);
      throw error;
    }
  };

  // Signing in and out.
  app.get('/', async (c) => {
    const session = await loadSession(ctx, c);
    if (session) return c.redirect('/console/agents', 303);
    const expired = c.req.query('expired') === '1';
    const out = c.req.query('signed_out') === '1';
    return plainPage(
      c,
      look,
      'Administration',
      html`${out ? html`<p class="flash" role="status" id="signed-out">You are signed out; the console's tokens are revoked.</p>` : ''}${expired ? html`<p class="note warn" role="status">Your console session ended; sign in again.</p>` : ''}
<p>Manage agents, clients, users, resources and keys, and read the audit log with its delegation chains.</p>
<p class="muted">You sign in through ${look.productName} itself, as an administrator.</p>
<form method="get" action="/console/login"><div class="actions"><button type="submit" class="primary" id="sign-in">Sign in</button></div></form>`,
    );
  });

  app.get('/login', async (c) => {
    await ensureClient();
    const url = new URL(await beginSignIn(ctx, c));
    if (c.req.query('switch') === '1') url.searchParams.set('prompt', 'login');
    return c.redirect(url.href, 303);
  });

  app.get('/callback', async (c) => {
    await ensureClient();
    const result = await finishSignIn(ctx, c, innerFetch);
    if ('session' in result) return c.redirect('/console/agents', 303);
    if (result.refused === 'not_admin') return notAdmin(c, result.description);
    return plainPage(c, look, 'Sign-in failed', html`<p class="error" role="alert">${result.description}</p><p><a href="/console/login">Sign in again</a></p>`, 400);
  });

  app.post(
    '/logout',
    admin(async (c, a) => {
      await endSession(ctx, c, a.session, innerFetch);
      return c.redirect('/console?signed_out=1', 303);
    }),
  );

  const ops = ADMIN_OPERATIONS;

  // Agents.
  app.get('/agents', admin(async (c, a) => a.view('Agents', 'agents', agentsPage(await a.run(ops.listAgents, { cursor: c.req.query('cursor'), limit: 50 })))));
  app.get(
    '/agents/:id',
    admin(async (c, a) => {
      const id = (c.req.param('id') ?? '');
      const agent = await a.run(ops.readAgent, { id });
      const events = await optional(() => a.run(ops.queryAudit, { agent: id, limit: 25 }));
      return a.view(`Agent ${agent.client_name ?? id}`, 'agents', agentPage(look, a.session.csrf, agent, events, await names(), adminResource, c.req.query('done')));
    }),
  );
  app.post(
    '/agents/:id',
    admin(async (c, a) => {
      const id = (c.req.param('id') ?? '');
      const action = one(a.form, 'action');
      const change: Record<string, unknown> =
        action === 'enable' ? { enabled: true }
        : action === 'disable' ? { enabled: false }
        : action === 'expiry' ? { expires_at: isoFrom(one(a.form, 'expires_at')) ?? null }
        : action === 'clear-expiry' ? { expires_at: null }
        : action === 'owner' ? { owner: one(a.form, 'owner') || null }
        : {};
      if (Object.keys(change).length === 0) throw new AdminError('invalid_request', 'unknown action');
      // Disabling cannot be undone for what the agent holds: the form asks for a tick (checked here too).
      if (action === 'disable' && one(a.form, 'confirm') !== 'yes') throw new AdminError('invalid_request', 'tick "Revoke everything it holds now" to disable the agent');
      await a.run(ops.updateAgent, { id, ...change });
      // The page the browser lands on reads the agent back.
      return c.redirect(`/console/agents/${enc(id)}?done=${enc(action!)}`, 303);
    }),
  );

  // Audit.
  app.get(
    '/audit',
    admin(async (c, a) => {
      const q = c.req.query();
      const filters = {
        since: isoFrom(q.since),
        until: isoFrom(q.until),
        actor: q.actor || undefined,
        agent: q.agent || undefined,
        subject: q.subject || undefined,
        client_id: q.client_id || undefined,
        tool: q.tool || undefined,
        type: q.type || undefined,
        decision: q.decision || undefined,
        cursor: q.cursor || undefined,
        limit: 50,
      };
      const result = await a.run(ops.queryAudit, filters);
      return a.view('Audit log', 'audit', auditPage(q, result, await names(), adminResource));
    }),
  );

  // Tool pins (docs/gateway.md "Tool pinning"): changes waiting for approval.
  toolPinPages(app, admin);
  // High-risk approvals (transactions), read-only.
  app.get(
    '/approvals',
    admin(async (c, a) => {
      const q = c.req.query();
      const filters = { status: q.status || undefined, user: q.user || undefined, tool: q.tool || undefined, cursor: q.cursor || undefined, limit: 50 };
      return a.view('Approvals', 'approvals', approvalsPage(q, await a.run(ops.listTransactions, filters), await names(), adminResource));
    }),
  );

  // Usage per day.
  app.get(
    '/usage',
    admin(async (c, a) => {
      const q = c.req.query();
      return a.view('Usage', 'usage', usagePage(q, await a.run(ops.usageReport, { from: q.from || undefined, to: q.to || undefined })));
    }),
  );

  // Users, their roles, grants and consents.
  app.get('/users', admin(async (c, a) => a.view('Users', 'users', usersPage(await a.run(ops.listUsers, { cursor: c.req.query('cursor'), limit: 50 })))));
  app.get(
    '/users/:username',
    admin(async (c, a) => {
      const username = (c.req.param('username') ?? '');
      const user = await a.run(ops.readUser, { username });
      const grants = await optional(() => a.run(ops.listGrants, { username, active: 'true', limit: 100 }));
      const consents = await optional(() => a.run(ops.listConsents, { username, limit: 100 }));
      return a.view(`User ${user.username}`, 'users', userPage(a.session.csrf, user, grants, consents, c.req.query('done')));
    }),
  );
  app.post(
    '/users/:username/roles',
    admin(async (c, a) => {
      const username = (c.req.param('username') ?? '');
      const roles = a.form.roles === undefined ? [] : ([] as string[]).concat(a.form.roles);
      await a.run(ops.updateUser, { username, roles });
      return c.redirect(`/console/users/${enc(username)}?done=roles`, 303);
    }),
  );
  app.post(
    '/users/:username/totp',
    admin(async (c, a) => {
      const username = (c.req.param('username') ?? '');
      await a.run(ops.resetUserTotp, { username });
      return c.redirect(`/console/users/${enc(username)}?done=totp`, 303);
    }),
  );
  app.post(
    '/users/:username/grants',
    admin(async (c, a) => {
      const username = (c.req.param('username') ?? '');
      await a.run(ops.revokeGrant, { username, grant_id: one(a.form, 'grant_id') });
      return c.redirect(`/console/users/${enc(username)}?done=grant`, 303);
    }),
  );
  app.post(
    '/users/:username/consents',
    admin(async (c, a) => {
      const username = (c.req.param('username') ?? '');
      await a.run(ops.revokeConsent, { username, client_id: one(a.form, 'client_id'), resource: one(a.form, 'resource') });
      return c.redirect(`/console/users/${enc(username)}?done=consent`, 303);
    }),
  );

  // Clients.
  app.get('/clients', admin(async (c, a) => a.view('Clients', 'clients', clientsPage(await a.run(ops.listClients, { cursor: c.req.query('cursor'), limit: 50 })))));
  app.get(
    '/clients/:id',
    admin(async (c, a) => {
      const client = await a.run(ops.readClient, { id: (c.req.param('id') ?? '') });
      return a.view(`Client ${client.client_name ?? client.client_id}`, 'clients', clientPage(a.session.csrf, client, c.req.query('done')));
    }),
  );
  app.post(
    '/clients/:id',
    admin(async (c, a) => {
      const id = (c.req.param('id') ?? '');
      const action = one(a.form, 'action');
      if (action !== 'enable' && action !== 'disable') throw new AdminError('invalid_request', 'unknown action');
      await a.run(ops.updateClient, { id, enabled: action === 'enable' });
      return c.redirect(`/console/clients/${enc(id)}?done=${action}`, 303);
    }),
  );

  // Resources (identifiers are URLs: they travel in the query), and the mapping try-out.
  app.get('/resources', admin(async (c, a) => a.view('Resources', 'resources', resourcesPage(await a.run(ops.listResources, { cursor: c.req.query('cursor'), limit: 50 })))));
  const showResource = async (a: Admin, id: string, tried?: Awaited<ReturnType<typeof tryMappings>>, sample?: string, expression?: string) => {
    const resource = await a.run(ops.readResource, { id });
    return a.view(`Resource ${String(resource.definition.name ?? id)}`, 'resources', resourcePage(a.session.csrf, resource, { tried, sample, expression }));
  };
  app.get('/resource', admin(async (c, a) => showResource(a, c.req.query('id') ?? '')));
  app.post(
    '/resource/try',
    admin(async (_c, a) => {
      const id = one(a.form, 'id') ?? '';
      const resource = await a.run(ops.readResource, { id });
      const sample = one(a.form, 'sample') ?? '';
      const expression = one(a.form, 'expression') ?? '';
      return showResource(a, id, tryMappings(resource.definition, sample, expression), sample, expression);
    }),
  );

  // Agreements and keys.
  app.get('/agreements', admin(async (_c, a) => a.view('Agreements', 'agreements', agreementsPage(await a.run(ops.listAgreements, {})))));
  app.get('/keys', admin(async (c, a) => a.view('Signing keys', 'keys', keysPage(a.session.csrf, await a.run(ops.listKeys, {}), c.req.query('done')))));
  app.post(
    '/keys/rotate',
    admin(async (c, a) => {
      const { kid } = await a.run(ops.rotateKeys, {});
      return c.redirect(`/console/keys?done=${enc(kid)}`, 303);
    }),
  );

  app.get('/*', (c, next) => (c.req.path === '/console/' ? c.redirect('/console', 308) : next()));
  app.all('*', (c) => plainPage(c, look, 'Not found', html`<p>There is no console page at <code>${c.req.path}</code>.</p><p><a href="/console">Back to the console</a></p>`, 404));

  /**
   * Names for the chain pictures: usernames for subjects, which clients are agents, resource
   * names. Read from the store for display only (the events themselves come through audit.query).
   */
  const names = async () => {
    const [users, clients] = await Promise.all([ctx.store.users.list(), ctx.store.clients.list()]);
    const bySub = new Map(users.map((u) => [u.sub, u.username]));
    const agents = new Set(clients.filter((r) => r.agent).map((r) => r.clientId));
    return { username: (sub: string) => bySub.get(sub), isAgent: (id: string) => agents.has(id), resourceName: (id: string) => ctx.resource(id)?.name };
  };

  return app;
}

/** A section the admin's roles may not cover: its refusal (audited by the operation) shows in place. */
async function optional<T>(read: () => Promise<T>): Promise<T | AdminError> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof AdminError && error.code === 'insufficient_scope') return error;
    throw error;
  }
}
