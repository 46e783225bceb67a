// The application during a peer's switchover: one client writing through the pair's nodes
// the way libpq's multi-host connection string with target_session_attrs=read-write does
// (the connection the Patroni, pg_auto_failover and repmgr docs tell applications to use
// without a proxy): try the node that took the last write, else the next. A write counts as
// acknowledged only when its COMMIT returned.
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { sleep } from '../../src/stack/wait';
import type { Endpoint } from './pg';

export interface PeerAck {
  id: string;
  node: number;
  at: number;
}

export interface PeerWriter {
  readonly acks: readonly PeerAck[];
  readonly errors: number;
  stop(): Promise<void>;
}

export function startPeerWriter(nodes: Endpoint[], retryPauseMs = 50): PeerWriter {
  const acks: PeerAck[] = [];
  const state = { errors: 0 };
  let stopped = false;
  let current = 0;
  let conn: Client | undefined;
  const drop = async () => {
    const c = conn;
    conn = undefined;
    await c?.end().catch(() => undefined);
  };
  const loop = async () => {
    while (!stopped) {
      const id = randomUUID();
      try {
        if (!conn) {
          const ep = nodes[current]!;
          conn = new Client({
            host: ep.host,
            port: ep.port,
            user: 'postgres',
            database: 'postgres',
            connectionTimeoutMillis: 1_000,
            query_timeout: 3_000,
          });
          conn.on('error', () => undefined);
          await conn.connect();
          // What target_session_attrs=read-write checks before handing out the connection.
          const ro = await conn.query('SHOW transaction_read_only');
          if (ro.rows[0]?.transaction_read_only !== 'off') throw new Error('read-only');
        }
        await conn.query('INSERT INTO bench_writes (id) VALUES ($1)', [id]);
        acks.push({ id, node: current, at: Date.now() });
      } catch {
        state.errors++;
        await drop();
        current = (current + 1) % nodes.length;
        await sleep(retryPauseMs);
      }
    }
  };
  const running = loop();
  return {
    acks,
    get errors() {
      return state.errors;
    },
    async stop() {
      stopped = true;
      await running;
      await drop();
    },
  };
}
