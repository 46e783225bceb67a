// The /metrics endpoint: Prometheus text from a prom-client registry, plus (on a worker) the
// Temporal SDK's own metrics, fetched from the SDK's exporter and served on the same endpoint so
// each process is one scrape target.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** A metrics setting that cannot be used; the message names the setting and what to do. */
export class MetricsSettingError extends Error {
  override name = 'MetricsSettingError';
}

export interface MetricsServer {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  registry: Registry;
  host: string;
  port: number;
  /** Where the port came from (a config path, an environment variable, a flag), for errors. */
  setting: string;
  /** More exposition text appended to the registry's (the Temporal SDK's metrics). */
  extra?: () => Promise<string>;
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('GET /metrics\n');
      return;
    }
    Promise.all([
      opts.registry.metrics(),
      opts.extra
        ? opts.extra().catch((err: Error) => `# temporal sdk metrics unavailable: ${err.message}\n`)
        : Promise.resolve(''),
    ]).then(
      ([own, extra]) => {
        res.writeHead(200, { 'content-type': opts.registry.contentType });
        res.end(extra ? `${own}\n${extra}` : own);
      },
      (err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`metrics: ${err.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE')
        reject(
          new MetricsSettingError(
            `metrics port ${opts.port} (${opts.setting}) is already in use on ${opts.host}: give this process another port, or 0 for any free one`,
          ),
        );
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND')
        reject(new MetricsSettingError(`metrics host ${opts.host} (metrics.host) is not an address of this machine`));
      else reject(err);
    });
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    server,
    port,
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port from a flag or an environment variable: an integer 0-65535 (0: any free port). */
export function parsePort(value: string, setting: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new MetricsSettingError(
      `${setting}=${JSON.stringify(value)} is not a port number: use an integer from 0 to 65535 (0 picks a free port)`,
    );
  }
  return n;
}

/** Fetches another exporter's exposition text (the Temporal SDK's), with a short timeout. */
export async function fetchExposition(url: string, timeoutMs = 2000): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.text();
}
