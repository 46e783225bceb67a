// The Slack bot (@slack/bolt): the slash command (slash.ts), the buttons (buttons.ts), and a
// message per run kept up to date (follow.ts). HTTP mode verifies Slack's request signatures (Bolt refuses a
// wrong signature or a timestamp older than five minutes with 401); Socket Mode needs an app
// token instead. Everything the bot says comes from the workflows; approvals and aborts are
// updates the workflow validates, so a button answers with the workflow's own verdict. The bot
// signs each decision it passes on, once it has mapped the Slack user to the approvers, with the
// key it shares with the control workers (docs/approvals.md).
// Reconciliation cases are decided with buttons too, through `resolveCase` (a workflow next to
// the primary), so a click is answered with the system's verdict as well.
import { App, HTTPReceiver, LogLevel, SocketModeReceiver, type Receiver, type webApi } from '@slack/bolt';
import type { Client } from '@temporalio/client';
import { FollowingClient } from '../lib/runs/following';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Config } from '../lib/config/schema';
import { triggersOf, type SlackConfig } from '../lib/config/triggers';
import { durationMs } from '../contract/runbook/duration';
import { loadRunbook, runbookPathFor } from '../lib/runbooks';
import type { PluginRegistry } from '../lib/plugins';
import type { RunbookDoc } from '../contract/runbook/types';
import { InputError } from '../lib/runs/client';
import { registerButtons } from './buttons';
import type { BotContext } from './context';
import { RunFollower } from './follow';
import { ReadinessWatch } from './readiness';
import { registerCommand } from './slash';
import { SLACK_DECISION_KEY_ENV } from '../contract/approvals';
import { slackBotSigner } from '../lib/sign';

export interface SlackSecrets {
  botToken: string;
  signingSecret?: string;
  appToken?: string;
  /** Signs the decisions the bot passes on; the control workers hold the same key (docs/approvals.md). */
  decisionKey?: string;
}

export interface SlackBotOptions {
  config: Config;
  /** A FollowingClient (regionshift slack's) follows the namespace when the control plane is replicated. */
  temporal: Client | FollowingClient;
  secrets: SlackSecrets;
  /** Overrides triggers.slack (tests). */
  slack?: Partial<SlackConfig>;
  runbookFor?: (kind: 'failover' | 'reconcile' | 'failback', service: string) => RunbookDoc;
  /** The config's plugins, loaded by the caller: a service's own runbook may use their steps. */
  plugins?: PluginRegistry;
  log?: (line: string) => void;
  /** How long `status` may take before it answers in two parts; default STATUS_ACK_MS; 0: always two (tests). */
  statusAckMs?: number;
}

/** Slack drops an answer that comes after 3 s: past this a slow `status` says it is reading, then answers. */
export const STATUS_ACK_MS = 2_000;

export interface SlackBot {
  app: App;
  receiver: Receiver;
  follower: RunFollower;
  /** Posts when a service's readiness evaluation turns to failing, and when it recovers. */
  readiness: ReadinessWatch;
  settings: SlackConfig;
  /** Starts the receiver (HTTP server or socket) and the follower; resolves with the HTTP port. */
  start(): Promise<{ port?: number }>;
  stop(): Promise<void>;
}

/** Secrets from the environment variables the config names. */
export function slackSecretsFromEnv(s: SlackConfig, env: NodeJS.ProcessEnv = process.env): SlackSecrets {
  const botToken = env[s.botTokenEnv];
  if (!botToken) throw new InputError(`the Slack bot token is not set: export ${s.botTokenEnv}`);
  const signingSecret = env[s.signingSecretEnv];
  const appToken = env[s.appTokenEnv];
  if (s.mode === 'http' && !signingSecret)
    throw new InputError(`HTTP mode needs the signing secret: export ${s.signingSecretEnv}`);
  if (s.mode === 'socket' && !appToken)
    throw new InputError(`Socket Mode needs an app-level token (xapp-…): export ${s.appTokenEnv}`);
  const decisionKey = env[SLACK_DECISION_KEY_ENV];
  if (!decisionKey)
    throw new InputError(
      `the bot signs approvals, aborts and case decisions: export ${SLACK_DECISION_KEY_ENV} (the same value the control workers have; openssl rand -hex 32)`,
    );
  return { botToken, decisionKey, ...(signingSecret ? { signingSecret } : {}), ...(appToken ? { appToken } : {}) };
}

export function createSlackBot(opts: SlackBotOptions): SlackBot {
  const { config } = opts;
  const temporal = opts.temporal instanceof FollowingClient ? opts.temporal : FollowingClient.fixed(opts.temporal);
  const base = triggersOf(config).slack;
  if (!base && !opts.slack?.channel)
    throw new InputError('no `triggers.slack` section in the config: the bot needs at least `channel`');
  const settings = { ...(base ?? {}), ...opts.slack } as SlackConfig;
  const log = opts.log ?? ((line: string) => console.log(line));
  // The service's own runbook of that kind (config `runbooks:`), else the built-in one.
  const runbookFor =
    opts.runbookFor ??
    ((kind, service) =>
      loadRunbook(
        runbookPathFor(
          config.services.find((x) => x.name === service),
          kind,
        ),
        { plugins: opts.plugins },
      ));
  const clientOptions = settings.apiUrl ? { slackApiUrl: settings.apiUrl } : {};

  const receiver: Receiver =
    settings.mode === 'socket'
      ? // (installerOptions.clientOptions is what Bolt hands the socket client for apps.connections.open.)
        new SocketModeReceiver({
          appToken: opts.secrets.appToken ?? '',
          logLevel: LogLevel.ERROR,
          installerOptions: { clientOptions },
        })
      : new HTTPReceiver({
          signingSecret: opts.secrets.signingSecret ?? '',
          endpoints: '/slack/events',
          logLevel: LogLevel.ERROR,
        });
  const app = new App({ token: opts.secrets.botToken, receiver, clientOptions, logLevel: LogLevel.ERROR });
  const web: webApi.WebClient = app.client;
  const follower = new RunFollower({
    temporal,
    web,
    config,
    channel: settings.channel,
    command: settings.command,
    followForMs: durationMs(settings.followFor),
    log,
  });
  const readiness = new ReadinessWatch({
    temporal,
    web,
    channel: settings.channel,
    services: config.services.map((s) => s.name),
    command: settings.command,
    log,
  });
  const ctx: BotContext = {
    config,
    temporal,
    web,
    settings,
    log,
    runbookFor,
    statusAckMs: opts.statusAckMs ?? STATUS_ACK_MS,
    ...(opts.secrets.decisionKey ? { signer: slackBotSigner(opts.secrets.decisionKey) } : {}),
  };

  registerCommand(app, ctx);
  registerButtons(app, ctx);
  app.error(async (err) => {
    log(`slack: ${err.message}`);
  });

  return {
    app,
    receiver,
    follower,
    readiness,
    settings,
    async start() {
      let port: number | undefined;
      if (settings.mode === 'http') {
        const server = (await app.start({ port: settings.port, host: settings.host })) as unknown as Server;
        port = (server.address() as AddressInfo).port;
      } else {
        await app.start();
      }
      follower.start(durationMs(settings.pollInterval));
      readiness.start(durationMs(settings.readinessPollInterval));
      return { port };
    },
    async stop() {
      await Promise.all([follower.stop(), readiness.stop()]);
      await app.stop();
    },
  };
}
