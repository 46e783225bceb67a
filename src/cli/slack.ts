import { parseArgs } from 'node:util';
import { triggersOf } from '../lib/config/triggers';
import { connectFollowing, InputError } from '../lib/runs/client';
import { loadPlugins } from '../lib/plugins';
import { createSlackBot, slackSecretsFromEnv } from '../slack/bot';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

/** `regionshift slack`: the Slack bot, in HTTP or Socket Mode as `triggers.slack.mode` says. */
export function slackCommand(argv: string[]): Promise<number> {
  return guard(false, async () => {
    const { values } = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, port: { type: 'string' } },
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const s = triggersOf(cfg).slack;
    if (!s) throw new InputError('the config has no `triggers.slack` section (channel, mode, …); see docs/triggers.md');
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && !Number.isInteger(port))
      throw new InputError(`--port ${values.port} is not a port number`);
    const temporal = await connectFollowing(cfg);
    const bot = createSlackBot({
      config: cfg,
      temporal,
      secrets: slackSecretsFromEnv(s),
      plugins: await loadPlugins(cfg.plugins),
      ...(port !== undefined ? { slack: { port } } : {}),
    });
    const { port: listening } = await bot.start();
    console.log(
      `regionshift slack ready: ${s.mode === 'http' ? `HTTP on ${s.host}:${listening}/slack/events` : 'Socket Mode'}, command ${s.command}, channel ${s.channel}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await bot.stop();
    await temporal.close();
    return EXIT.ok;
  });
}
