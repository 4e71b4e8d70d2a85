import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { revocationChannel, type RevocationChannel } from '../../src/store/revocation-channel.ts';
import { until } from '../helpers/private-services.ts';

/**
 * The revocation channel's subscriber across a reconnect, against a scripted Redis (a few RESP
 * replies over loopback) so the moment between a reconnection and its SUBSCRIBE reply can be held
 * open: a close, or another drop, in that moment must not leave a rejected promise nobody handles
 * (Node ends a service process on one). ioredis's own re-subscription on reconnect is such a
 * promise; the channel subscribes on every connection itself, with its error handled, instead.
 */
describe('revocation channel: a subscriber closed while re-subscribing after a reconnect', () => {
  let server: Server;
  let url: string;
  /** Commands received, per connection (in the order they were accepted). */
  const connections: { socket: Socket; commands: string[][] }[] = [];
  /** Connections after the first get no SUBSCRIBE reply: the re-subscription stays pending. */
  const answerSubscribe = (index: number) => index === 0;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  let channel: RevocationChannel | undefined;

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = createServer((socket) => {
      const index = connections.push({ socket, commands: [] }) - 1;
      let buffer = Buffer.alloc(0);
      socket.on('error', () => undefined);
      socket.on('data', (chunk) => {
        buffer = Buffer.concat([buffer, chunk]);
        for (;;) {
          const parsed = parseCommand(buffer);
          if (!parsed) break;
          buffer = buffer.subarray(parsed.length);
          const command = parsed.args;
          connections[index]!.commands.push(command);
          const name = command[0]!.toLowerCase();
          if (name === 'info') socket.write(bulk('# Server\r\nredis_version:7.2.0\r\nloading:0\r\n'));
          else if (name === 'subscribe') {
            if (answerSubscribe(index)) socket.write(`*3\r\n${bulk('subscribe')}${bulk(command[1]!)}:1\r\n`);
          } else if (name === 'ping') socket.write('+PONG\r\n');
          else socket.write('+OK\r\n');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    url = `redis://127.0.0.1:${address.port}`;
  });
  after(async () => {
    await channel?.close();
    process.off('unhandledRejection', onUnhandled);
    for (const { socket } of connections) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const subscribes = (index: number) => connections[index]?.commands.filter((c) => c[0]!.toLowerCase() === 'subscribe').length ?? 0;

  it('subscribes once per connection, and a close during the re-subscription leaves no unhandled rejection', async () => {
    const errors: string[] = [];
    let connects = 0;
    channel = revocationChannel({ url, channel: 'mandate-test:rc', publishes: false, onEvent: () => undefined, onConnect: () => connects++, onError: (error) => errors.push(error.message) });
    await until(async () => connects === 1, 10_000, 'the first subscription');
    assert.equal(subscribes(0), 1);
    // The connection drops (Redis restarted); the subscriber reconnects and subscribes again.
    connections[0]!.socket.destroy();
    await until(async () => subscribes(1) >= 1, 10_000, 'the SUBSCRIBE after reconnecting');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(subscribes(1), 1, 'one SUBSCRIBE on the new connection (the channel\'s own), not a second from ioredis');
    // Closed before Redis answers: the pending SUBSCRIBE is rejected, and handled.
    await channel.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(unhandled.map(String), []);
    assert.deepEqual(errors, ['Connection is closed.']);
    assert.equal(connects, 1, 'the second subscription never completed');
  });
});

const bulk = (text: string) => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;

/** One RESP command (an array of bulk strings) from the start of `buffer`, or undefined if incomplete. */
function parseCommand(buffer: Buffer): { args: string[]; length: number } | undefined {
  let offset = 0;
  const line = () => {
    const end = buffer.indexOf('\r\n', offset);
    if (end < 0) return undefined;
    const text = buffer.toString('latin1', offset, end);
    offset = end + 2;
    return text;
  };
  const head = line();
  if (head === undefined) return undefined;
  assert.match(head, /^\*\d+$/, 'ioredis sends commands as RESP arrays');
  const args: string[] = [];
  for (let i = 0; i < Number(head.slice(1)); i++) {
    const size = line();
    if (size === undefined) return undefined;
    const length = Number(size.slice(1));
    if (buffer.length < offset + length + 2) return undefined;
    args.push(buffer.toString('utf8', offset, offset + length));
    offset += length + 2;
  }
  return { args, length: offset };
}
