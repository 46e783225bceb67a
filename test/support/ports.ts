// Free loopback ports for servers a test starts. Each is bound to port 0 and held until all are
// known, so one call never returns the same port twice; a small race with other processes
// between release and use is accepted.
import { createServer, type Server } from 'node:net';

/** Distinct free loopback ports: each is bound to port 0 and held until all are known. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((ok, fail) => {
        server.once('error', fail);
        server.listen({ host: '127.0.0.1', port: 0 }, ok);
      });
      const address = server.address();
      if (!address || typeof address === 'string') throw new Error('no port from listen(0)');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  }
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}
