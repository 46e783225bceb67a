// `regionshift app`: the demo's banking application (src/demo/app.ts), as `stack up` starts it
// when the config has stack.app. Writes to the region it was last told is primary.
import { parseArgs } from 'node:util';
import { startDemoApp } from '../demo/app';
import { InputError } from '../lib/runs/client';
import { APP_READY_LINE } from '../stack/app';
import { loadConfig } from '../lib/config/load';
import { guard } from './exit';
import { EXIT } from './exit';

const USAGE =
  'usage: regionshift app [--config FILE] [--port N] [--primary REGION]   (service and port from stack.app in the config; writes to its first region unless told)';

export function appCommand(argv: string[]): Promise<number> {
  return guard(false, async () => {
    const { values } = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, port: { type: 'string' }, primary: { type: 'string' } },
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const app = cfg.stack.app;
    if (!app)
      throw new InputError(
        `the config has no stack.app (e.g. stack: { app: { service: ledger, port: 8235 } })\n${USAGE}`,
      );
    const port = values.port === undefined ? app.port : Number(values.port);
    if (!(Number.isInteger(port) && port >= 0 && port < 65536))
      throw new InputError(`--port ${values.port} is not a port number\n${USAGE}`);
    const service = cfg.services.find((s) => s.name === app.service)!;
    if (values.primary !== undefined && !service.regions.includes(values.primary))
      throw new InputError(
        `--primary ${values.primary} is not a region of ${service.name} (${service.regions.join(', ')})\n${USAGE}`,
      );
    const server = await startDemoApp(service, { port, ...(values.primary ? { primary: values.primary } : {}) });
    console.log(
      `${APP_READY_LINE}: ${server.url} (POST /primary with an Idempotency-Key, GET /status); ${service.name}, writing to ${server.status().primary}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await server.close();
    return EXIT.ok;
  });
}
