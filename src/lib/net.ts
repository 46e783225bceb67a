// Port and HTTP probes, with node built-ins only.
import { createConnection, createServer, type Server } from 'node:net';
import { get } from 'node:http';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** True when nothing listens on host:port (we could bind it ourselves). */
export async function isPortFree(host: string, port: number): Promise<boolean> {
  const held: Server[] = [];
  const free = await bindHeld(host, port, held);
  await closeAll(held);
  return free;
}

/** Binds host:port and keeps it in `held` (false when it is taken). */
function bindHeld(host: string, port: number, held: Server[]): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => {
      held.push(server);
      resolve(true);
    });
  });
}

async function closeAll(servers: Server[]): Promise<void> {
  await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
}

/** True when a TCP connection to host:port is accepted within `timeoutMs`. */
export function tcpOpen(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The HTTP status of GET `url`, or undefined when nothing answered within `timeoutMs`. */
export function httpStatus(url: string, timeoutMs = 2_000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once('timeout', () => {
      req.destroy();
      resolve(undefined);
    });
    req.once('error', () => resolve(undefined));
  });
}

/**
 * The process listening on a TCP port, found through /proc (Linux; other users' processes are
 * only visible to root). Best effort: undefined when it cannot be told.
 */
export function listenerOf(port: number): { pid: number; command: string } | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN; field 9 is the socket inode.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9]) inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return undefined;
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1] && inodes.has(m[1])) {
        let command = '?';
        try {
          command = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
            .split('\0')
            .filter(Boolean)
            .join(' ')
            .replace(/\s+/g, ' ')
            .slice(0, 120);
        } catch {
          // exited meanwhile
        }
        return { pid: Number(pid), command };
      }
    }
  }
  return undefined;
}

/**
 * Where free ports are looked for: below the kernel's ephemeral range. A port listen(0) gives comes
 * from that range, and while the server on it is down (a region killed and started again, in a
 * test or the demo) an outgoing connection may take it as its source port: the restart then fails
 * with EADDRINUSE (seen in CI: a Temporal cluster's membership port, a blackbox exporter's). Test
 * files running at once look in slices of their own (VITEST_POOL_ID, which the CLIs they start
 * inherit), so two never choose the same port in the moment before either binds it.
 */
const LOWEST_PORT = 10_000;
const SLICES = 8;

function portRange(): { low: number; high: number } {
  let ephemeral = 32_768;
  try {
    ephemeral = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // not Linux: its usual default
  }
  const low = LOWEST_PORT;
  const high = Math.max(Number.isInteger(ephemeral) ? ephemeral : 32_768, low + SLICES * 500);
  const pool = Number(process.env.VITEST_POOL_ID);
  if (!Number.isInteger(pool) || pool < 1) return { low, high };
  const size = Math.floor((high - low) / SLICES);
  const from = low + ((pool - 1) % SLICES) * size;
  return { low: from, high: from + size };
}

/** This process's range (it does not change while the process runs), read once. */
let range: { low: number; high: number } | undefined;
/** Where this process looks next: it walks its range, so it does not hand out a port twice soon. */
let cursor: number | undefined;

/**
 * `count` consecutive free loopback ports (one when not asked), none of `avoid`: the first.
 * Each is bound while the search goes on, so none is counted twice.
 */
export async function freePortRun(count = 1, avoid: number[] = []): Promise<number> {
  const { low, high } = (range ??= portRange());
  const span = high - low;
  cursor ??= low + Math.floor(Math.random() * span);
  const held: Server[] = [];
  try {
    for (let tried = 0; tried < span; tried++) {
      const base = cursor;
      cursor = cursor + 1 >= high ? low : cursor + 1;
      if (base + count > high) continue;
      let ok = true;
      for (let i = 0; i < count && ok; i++)
        ok = !avoid.includes(base + i) && (await bindHeld('127.0.0.1', base + i, held));
      if (ok) {
        cursor = base + count >= high ? low : base + count;
        return base;
      }
    }
    throw new Error(`no run of ${count} free ports on 127.0.0.1 between ${low} and ${high}`);
  } finally {
    await closeAll(held);
  }
}

/** Distinct free loopback ports (see portRange for where). */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePortRun(1, ports));
  return ports;
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}
