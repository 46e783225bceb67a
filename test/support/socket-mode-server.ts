// Plays Slack's Socket Mode endpoint: a minimal WebSocket server (RFC 6455 handshake and frames,
// written here so the tests need no WebSocket package) that says hello, sends envelopes, and
// collects the app's acknowledgements. Pair it with the Web API recorder answering
// apps.connections.open with this server's ws:// URL.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

export interface SocketModeServer {
  url: string;
  /** Resolves once an app is connected (and has been greeted). */
  connected: Promise<void>;
  /** Sends an envelope; resolves with the app's acknowledgement payload. */
  send(type: string, payload: unknown): Promise<unknown>;
  close(): Promise<void>;
}

function frame(opcode: number, data: Buffer): Buffer {
  const len = data.length;
  const head =
    len < 126
      ? Buffer.from([0x80 | opcode, len])
      : len < 65536
        ? Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff])
        : Buffer.concat([
            Buffer.from([0x80 | opcode, 127]),
            (() => {
              const b = Buffer.alloc(8);
              b.writeBigUInt64BE(BigInt(len));
              return b;
            })(),
          ]);
  return Buffer.concat([head, data]);
}

export async function startSocketModeServer(): Promise<SocketModeServer> {
  let socket: Duplex | undefined;
  const sockets = new Set<Duplex>();
  let onConnected!: () => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const waiting = new Map<string, (payload: unknown) => void>();
  let envelopes = 0;
  let buffered = Buffer.alloc(0);

  const handleMessage = (text: string): void => {
    const msg = JSON.parse(text) as { envelope_id?: string; payload?: unknown };
    if (msg.envelope_id && waiting.has(msg.envelope_id)) {
      waiting.get(msg.envelope_id)!(msg.payload);
      waiting.delete(msg.envelope_id);
    }
  };

  const onData = (chunk: Buffer): void => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 2) return;
      const opcode = buffered[0]! & 0x0f;
      let len = buffered[1]! & 0x7f;
      const masked = (buffered[1]! & 0x80) !== 0;
      let offset = 2;
      if (len === 126) {
        if (buffered.length < 4) return;
        len = buffered.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (buffered.length < 10) return;
        len = Number(buffered.readBigUInt64BE(2));
        offset = 10;
      }
      const maskAt = offset;
      if (masked) offset += 4;
      if (buffered.length < offset + len) return;
      const data = Buffer.from(buffered.subarray(offset, offset + len));
      if (masked) for (let i = 0; i < data.length; i++) data[i]! ^= buffered[maskAt + (i % 4)]!;
      buffered = buffered.subarray(offset + len);
      if (opcode === 0x1) handleMessage(data.toString('utf8'));
      else if (opcode === 0x9)
        socket?.write(frame(0xa, data)); // ping → pong
      else if (opcode === 0x8) {
        // Echo the close (with the client's status code); the client then closes the TCP connection.
        socket?.write(frame(0x8, data.subarray(0, 2)));
        socket = undefined;
      }
    }
  };

  const server: Server = createServer((_req, res) => {
    res.writeHead(426);
    res.end();
  });
  server.on('upgrade', (req, s: Duplex) => {
    const accept = createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    s.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket = s;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', onData);
    s.on('error', () => undefined);
    s.write(
      frame(
        0x1,
        Buffer.from(
          JSON.stringify({
            type: 'hello',
            num_connections: 1,
            debug_info: { host: 'applink-test', approximate_connection_time: 18060 },
            connection_info: { app_id: 'A0TEST' },
          }),
        ),
      ),
    );
    onConnected();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/link/?ticket=test`,
    connected,
    send(type, payload) {
      const envelope_id = `env-${++envelopes}`;
      return new Promise((resolve) => {
        waiting.set(envelope_id, resolve);
        socket!.write(
          frame(0x1, Buffer.from(JSON.stringify({ envelope_id, type, payload, accepts_response_payload: true }))),
        );
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
