import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { actorChain } from '../../src/core/delegation.ts';
import { resourceServer } from '../../src/gateway/resource-server.ts';
import { nodeVerifier } from '../../src/gateway/node/verifier.ts';

/**
 * The demo's Todo API (seed 000): a REST API of the caller's todos, keyed by `sub`. It accepts
 * only tokens issued for it (`aud` = its URL) with `todo_api:read` / `todo_api:write`, and keeps
 * the delegation chain of each change: who acted for the user when the todo was changed.
 */
export interface Todo {
  id: number;
  title: string;
  done: boolean;
  created_at: string;
  /** Each change, with the client and the act chain of the token that made it. */
  history: { action: 'created' | 'completed' | 'reopened'; at: string; client_id?: string; act: { sub: string }[] }[];
}

export interface TodoApi {
  url: string;
  todos: Map<string, Todo[]>;
  close(): Promise<void>;
}

export async function startTodoApi(options: { issuer: string; resource: string; host?: string; port?: number }): Promise<TodoApi> {
  const guard = resourceServer({ resource: options.resource, issuer: options.issuer, scopesSupported: ['todo_api:read', 'todo_api:write'], resourceName: 'Todo API', createVerifier: nodeVerifier });
  const todos = new Map<string, Todo[]>();
  let nextId = 1;
  const app = new Hono();

  const authorize = async (c: Context, scope: string) => {
    const result = await guard.check(c.req.header('authorization'), [scope]);
    if (!result.ok) return { response: c.json(result.body, result.status, result.headers) };
    const claims = result.claims;
    return {
      sub: claims.sub!,
      stamp: { at: new Date().toISOString(), client_id: claims.client_id, act: actorChain(claims.act).map((actor) => ({ sub: actor.sub })) },
    };
  };
  const listOf = (sub: string) => {
    let list = todos.get(sub);
    if (!list) todos.set(sub, (list = []));
    return list;
  };

  app.get(guard.metadataPath, (c) => c.json(guard.metadata));
  app.get('/todos', async (c) => {
    const auth = await authorize(c, 'todo_api:read');
    if ('response' in auth) return auth.response;
    return c.json({ todos: listOf(auth.sub) });
  });
  app.post('/todos', async (c) => {
    const auth = await authorize(c, 'todo_api:write');
    if ('response' in auth) return auth.response;
    const body = (await c.req.json().catch(() => ({}))) as { title?: unknown };
    if (typeof body.title !== 'string' || body.title.trim() === '' || body.title.length > 200) {
      return c.json({ error: 'invalid_request', error_description: 'title: a non-empty string of at most 200 characters' }, 400);
    }
    const todo: Todo = { id: nextId++, title: body.title.trim(), done: false, created_at: auth.stamp.at, history: [{ action: 'created', ...auth.stamp }] };
    listOf(auth.sub).push(todo);
    return c.json(todo, 201);
  });
  app.patch('/todos/:id', async (c) => {
    const auth = await authorize(c, 'todo_api:write');
    if ('response' in auth) return auth.response;
    const todo = listOf(auth.sub).find((t) => t.id === Number(c.req.param('id')));
    if (!todo) return c.json({ error: 'not_found', error_description: 'no such todo' }, 404);
    const body = (await c.req.json().catch(() => ({}))) as { done?: unknown };
    if (typeof body.done !== 'boolean') return c.json({ error: 'invalid_request', error_description: 'done: a boolean' }, 400);
    todo.done = body.done;
    todo.history.push({ action: body.done ? 'completed' : 'reopened', ...auth.stamp });
    return c.json(todo);
  });
  app.delete('/todos/:id', async (c) => {
    const auth = await authorize(c, 'todo_api:write');
    if ('response' in auth) return auth.response;
    const list = listOf(auth.sub);
    const index = list.findIndex((t) => t.id === Number(c.req.param('id')));
    if (index < 0) return c.json({ error: 'not_found', error_description: 'no such todo' }, 404);
    list.splice(index, 1);
    return c.body(null, 204);
  });
  app.notFound((c) => c.json({ error: 'not_found', error_description: 'GET/POST /todos, PATCH/DELETE /todos/{id}' }, 404));

  const host = options.host ?? 'localhost';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: options.port ?? 8001 }, () => resolve(s as Server)) as Server;
    s.once('error', reject);
  });
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    todos,
    close: () =>
      new Promise<void>((resolve) => {
        guard.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
