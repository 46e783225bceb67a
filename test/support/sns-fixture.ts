// Plays Amazon SNS for the intake tests: a key pair made at test time (node:crypto), a
// self-signed X.509 certificate for it (openssl req -x509, no key is committed), a local server
// that serves the certificate and answers subscription confirmations, and a signer that builds
// the canonical string as the SNS documentation describes it (written here independently of
// the intake's own code, so a mistake there is not repeated here).
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SnsFixture {
  port: number;
  certUrl: string;
  /** GET requests the fixture received on /confirm (subscription confirmations). */
  confirmations: string[];
  /** The URLs the intake may fetch in tests: this fixture only. */
  urlAllowed(url: URL): boolean;
  notification(
    message: unknown,
    opts?: { version?: '1' | '2'; timestamp?: Date; subject?: string; certUrl?: string; topicArn?: string },
  ): Record<string, string>;
  subscriptionConfirmation(opts?: { subscribeUrl?: string; version?: '1' | '2' }): Record<string, string>;
  /** Signs a message as SNS would (replaces Signature). */
  resign(m: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

export const TOPIC = 'arn:aws:sns:us-west-2:123456789012:regionshift-alarms';

function canonical(m: Record<string, string>): string {
  // https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
  const keys =
    m.Type === 'Notification'
      ? ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type']
      : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
  return keys
    .filter((k) => m[k] !== undefined)
    .map((k) => `${k}\n${m[k]}\n`)
    .join('');
}

export async function createSnsFixture(): Promise<SnsFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-sns-'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-new',
      '-key',
      keyFile,
      '-subj',
      '/CN=sns.amazonaws.com',
      '-days',
      '2',
      '-sha256',
      '-out',
      certFile,
    ],
    { stdio: 'pipe' },
  );
  const certPem = readFileSync(certFile, 'utf8');

  const confirmations: string[] = [];
  const server: Server = createServer((req, res) => {
    if (req.url === '/SimpleNotificationService-test.pem') {
      res.writeHead(200, { 'content-type': 'application/x-pem-file' });
      res.end(certPem);
      return;
    }
    if (req.url?.startsWith('/confirm')) {
      confirmations.push(req.url);
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        '<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-west-2:123456789012:regionshift-alarms:1</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>',
      );
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;

  const resign = (m: Record<string, string>): Record<string, string> => {
    const algorithm = m.SignatureVersion === '1' ? 'sha1' : 'sha256';
    return { ...m, Signature: sign(algorithm, Buffer.from(canonical(m), 'utf8'), privateKey).toString('base64') };
  };

  return {
    port,
    certUrl: `${base}/SimpleNotificationService-test.pem`,
    confirmations,
    urlAllowed: (url) => url.protocol === 'http:' && url.hostname === '127.0.0.1' && url.port === String(port),
    notification(message, opts = {}) {
      return resign({
        Type: 'Notification',
        MessageId: randomUUID(),
        TopicArn: opts.topicArn ?? TOPIC,
        ...(opts.subject !== undefined ? { Subject: opts.subject } : {}),
        Message: typeof message === 'string' ? message : JSON.stringify(message),
        Timestamp: (opts.timestamp ?? new Date()).toISOString(),
        SignatureVersion: opts.version ?? '2',
        Signature: '',
        SigningCertURL: opts.certUrl ?? `${base}/SimpleNotificationService-test.pem`,
        UnsubscribeURL: `${base}/unsubscribe`,
      });
    },
    subscriptionConfirmation(opts = {}) {
      const token = randomUUID().replace(/-/g, '');
      return resign({
        Type: 'SubscriptionConfirmation',
        MessageId: randomUUID(),
        Token: token,
        TopicArn: TOPIC,
        Message: `You have chosen to subscribe to the topic ${TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message.`,
        SubscribeURL:
          opts.subscribeUrl ??
          `${base}/confirm?Action=ConfirmSubscription&TopicArn=${encodeURIComponent(TOPIC)}&Token=${token}`,
        Timestamp: new Date().toISOString(),
        SignatureVersion: opts.version ?? '1',
        Signature: '',
        SigningCertURL: `${base}/SimpleNotificationService-test.pem`,
      });
    },
    resign,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A CloudWatch alarm notification's Message, as CloudWatch writes it to SNS. */
export function cloudWatchAlarm(name: string, state: 'ALARM' | 'OK', at = new Date()): Record<string, unknown> {
  return {
    AlarmName: name,
    AlarmDescription: `${name} (regionshift test)`,
    AWSAccountId: '123456789012',
    NewStateValue: state,
    NewStateReason:
      state === 'ALARM'
        ? 'Threshold Crossed: 3 datapoints were greater than the threshold (5.0).'
        : 'Threshold Crossed: back below the threshold.',
    StateChangeTime: at.toISOString().replace('Z', '+0000'),
    Region: 'US West (Oregon)',
    AlarmArn: `arn:aws:cloudwatch:us-west-2:123456789012:alarm:${name}`,
    OldStateValue: state === 'ALARM' ? 'OK' : 'ALARM',
    Trigger: {
      MetricName: 'HTTPCode_Target_5XX_Count',
      Namespace: 'AWS/ApplicationELB',
      Statistic: 'SUM',
      Period: 60,
      EvaluationPeriods: 3,
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 5,
    },
  };
}
