// A minimal Redis client: RESP2 over node:net, one connection per call site, commands in order.
// The cache provider sends a handful of admin commands (ROLE, INFO, CONFIG, REPLICAOF, SET) and
// never pipelines or subscribes; a library (ioredis, node-redis) would bring reconnect queues and
// cluster logic that only hide a dead node from a failover that needs to see it at once.
import { connect as netConnect, type Socket } from 'node:net';

export type RespValue = string | number | null | RespValue[] | RespError;

export class RespError extends Error {
  /** The error's first word: NOREPLICAS, READONLY, NOAUTH, ERR… */
  readonly code: string;
  constructor(message: string) {
    super(message);
    this.code = message.split(' ')[0] ?? 'ERR';
  }
}

export interface RedisTarget {
  host: string;
  port: number;
  password?: string;
}

/** Parses one value at `at`; undefined when the buffer does not hold all of it yet. */
function parse(buf: Buffer, at: number): { value: RespValue; next: number } | undefined {
  if (at >= buf.length) return undefined;
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: new RespError(line), next };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), next: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, pos);
        if (!item) return undefined;
        items.push(item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      throw new Error(`not a RESP reply (type byte ${JSON.stringify(type)})`);
  }
}

function encode(args: (string | number)[]): Buffer {
  const parts = args.map((a) => Buffer.from(String(a), 'utf8'));
  return Buffer.concat([
    Buffer.from(`*${parts.length}\r\n`),
    ...parts.flatMap((p) => [Buffer.from(`$${p.length}\r\n`), p, Buffer.from('\r\n')]),
  ]);
}

export class RedisConnection {
  private buf = Buffer.alloc(0);
  private waiting: { resolve(v: RespValue): void; reject(e: Error): void }[] = [];
  private closed?: Error;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (;;) {
        let r: ReturnType<typeof parse>;
        try {
          r = parse(this.buf, 0);
        } catch (err) {
          this.fail(err as Error);
          return;
        }
        if (!r) return;
        this.buf = this.buf.subarray(r.next);
        this.waiting.shift()?.resolve(r.value);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  private fail(err: Error): void {
    this.closed ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
    this.socket.destroy();
  }

  static async open(target: RedisTarget, timeoutMs = 3_000): Promise<RedisConnection> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(Object.assign(new Error(`connect ETIMEDOUT ${target.host}:${target.port}`), { code: 'ETIMEDOUT' }));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    socket.setTimeout(15_000, () => socket.destroy(new Error(`no answer from ${target.host}:${target.port} in 15 s`)));
    const conn = new RedisConnection(socket);
    if (target.password) await conn.call('AUTH', target.password);
    return conn;
  }

  /** One command; a Redis error reply is thrown as RespError. */
  async call(...args: (string | number)[]): Promise<RespValue> {
    const value = await this.send(args);
    if (value instanceof RespError) throw value;
    return value;
  }

  /** One command; a Redis error reply is returned, not thrown (for probes that expect a refusal). */
  send(args: (string | number)[]): Promise<RespValue> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(encode(args));
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}

export async function withRedis<T>(target: RedisTarget, fn: (conn: RedisConnection) => Promise<T>): Promise<T> {
  const conn = await RedisConnection.open(target);
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

/** INFO <section> as key → value. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}
