// Socket Mode, chosen by config: the bot opens its connection through apps.connections.open (the
// Web API recorder) to a local stand-in for Slack's WebSocket endpoint, receives a slash command
// as an envelope and acknowledges it with its answer. No HTTP endpoint is served in this mode.
import { SocketModeReceiver } from '@slack/bolt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createSlackBot, slackSecretsFromEnv, type SlackBot } from '../src/slack/bot';
import { SlackConfig } from '../src/lib/config/triggers';
import { startRigs } from './support/rigs';
import { finalAnswer, startSlackApi, type SlackApi } from './support/slack-api';
import { startSocketModeServer, type SocketModeServer } from './support/socket-mode-server';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';

let te: TemporalEnv;
let slack: SlackApi;
let ws: SocketModeServer;
let bot: SlackBot;

beforeAll(async () => {
  [te, slack, ws] = await startRigs([
    createTemporalEnv((address) => paperConfig(address, [{ name: 'ledger', regions: ['us-west-2', 'us-east-1'] }])),
    startSlackApi(),
    startSocketModeServer(),
  ]);
  slack.socketModeUrl = ws.url;
  (te.config as { triggers?: unknown }).triggers = {
    slack: { mode: 'socket', channel: 'C0RUNS01', pollInterval: '500ms', apiUrl: slack.apiUrl },
  };
  bot = createSlackBot({
    config: te.config,
    temporal: te.client,
    secrets: { botToken: 'xoxb-test', appToken: 'xapp-test' },
    log: () => undefined,
  });
});

afterAll(async () => {
  await bot?.stop().catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300)); // let the client finish its closing handshake
  await Promise.allSettled([ws?.close(), slack?.close(), te?.teardown()]);
});

it('the secrets a mode needs are named when missing', () => {
  const s = SlackConfig.parse({ channel: 'C0RUNS01', mode: 'socket' });
  expect(() => slackSecretsFromEnv(s, { SLACK_BOT_TOKEN: 'xoxb' })).toThrow(
    'Socket Mode needs an app-level token (xapp-…): export SLACK_APP_TOKEN',
  );
  expect(() => slackSecretsFromEnv({ ...s, mode: 'http' }, { SLACK_BOT_TOKEN: 'xoxb' })).toThrow(
    'HTTP mode needs the signing secret: export SLACK_SIGNING_SECRET',
  );
  expect(() => slackSecretsFromEnv(s, {})).toThrow('export SLACK_BOT_TOKEN');
  expect(() => slackSecretsFromEnv(s, { SLACK_BOT_TOKEN: 'xoxb', SLACK_APP_TOKEN: 'xapp' })).toThrow(
    'the bot signs approvals, aborts and case decisions: export REGIONSHIFT_SLACK_DECISION_KEY (the same value the control workers have; openssl rand -hex 32)',
  );
});

it('connects over Socket Mode and answers a slash command envelope', async () => {
  expect(bot.receiver).toBeInstanceOf(SocketModeReceiver);
  const started = await bot.start();
  expect(started.port).toBeUndefined();
  await ws.connected;
  expect(slack.callsOf('apps.connections.open')).toHaveLength(1);
  const responseUrl = slack.responseUrl();
  const ack = (await ws.send('slash_commands', {
    token: 'legacy',
    team_id: 'T0TEST',
    team_domain: 'test',
    channel_id: 'C0OPS001',
    channel_name: 'ops',
    user_id: 'UCAROL01',
    user_name: 'carol',
    command: '/regionshift',
    text: 'status',
    response_url: responseUrl,
    trigger_id: '1.2.3',
    api_app_id: 'A0TEST',
  })) as { text?: string; response_type?: string };
  expect(ack.response_type).toBe('ephemeral');
  // A slow status answers in two parts, the second through response_url.
  expect((await finalAnswer(slack, responseUrl, { status: 200, text: ack.text ?? '' })).text).toContain(
    '*ledger*: no runs yet',
  );
  const bad = (await ws.send('slash_commands', {
    team_id: 'T0TEST',
    channel_id: 'C0OPS001',
    user_id: 'UCAROL01',
    command: '/regionshift',
    text: 'launch rockets',
    response_url: slack.responseUrl(),
  })) as { text?: string };
  expect(bad.text).toContain('unknown command `launch`');
});
