// Amazon SNS HTTP(S) deliveries: the message signature is checked before anything in the message
// is believed. The signing certificate is fetched only from an SNS host of AWS over https (the
// TLS handshake is what authenticates it), and cached. Signature version 1 is SHA1withRSA,
// version 2 SHA256withRSA, over the message's fields in a fixed order.
import { verify, X509Certificate } from 'node:crypto';

export type SnsType = 'Notification' | 'SubscriptionConfirmation' | 'UnsubscribeConfirmation';

export interface SnsMessage {
  Type: SnsType;
  MessageId: string;
  TopicArn: string;
  Message: string;
  Timestamp: string;
  SignatureVersion: string;
  Signature: string;
  SigningCertURL: string;
  Subject?: string;
  SubscribeURL?: string;
  Token?: string;
  UnsubscribeURL?: string;
}

/** Why a message was not accepted; `status` is the HTTP answer (4xx: SNS does not retry). */
export class SnsRejected extends Error {
  override name = 'SnsRejected';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Production rule for SigningCertURL and SubscribeURL: https://sns.<region>.amazonaws.com[.cn]. */
export function isSnsHostUrl(url: URL): boolean {
  return (
    url.protocol === 'https:' &&
    (url.port === '' || url.port === '443') &&
    /^sns\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com(\.cn)?$/.test(url.hostname)
  );
}

const NOTIFICATION_FIELDS = ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'] as const;
const SUBSCRIPTION_FIELDS = ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'] as const;

/** The string SNS signs: "Name\nvalue\n" for each field present, in its fixed order. */
export function stringToSign(m: SnsMessage): string {
  const fields = m.Type === 'Notification' ? NOTIFICATION_FIELDS : SUBSCRIPTION_FIELDS;
  let out = '';
  for (const f of fields) {
    const v = (m as unknown as Record<string, unknown>)[f];
    if (v === undefined || v === null) continue;
    out += `${f}\n${String(v)}\n`;
  }
  return out;
}

export interface SnsVerifierOptions {
  /** Older messages are replays: rejected. */
  maxAgeMs: number;
  /** When not empty, only these topics. */
  topicArns?: string[];
  /**
   * Which URLs may be fetched (certificate, subscription confirmation). Production: isSnsHostUrl.
   * Tests serve both on 127.0.0.1 and pass their own rule; nothing else should.
   */
  urlAllowed?: (url: URL) => boolean;
  now?: () => number;
}

const REQUIRED: Record<SnsType, (keyof SnsMessage)[]> = {
  Notification: ['MessageId', 'TopicArn', 'Message', 'Timestamp', 'SignatureVersion', 'Signature', 'SigningCertURL'],
  SubscriptionConfirmation: [
    'MessageId',
    'TopicArn',
    'Message',
    'Timestamp',
    'SignatureVersion',
    'Signature',
    'SigningCertURL',
    'SubscribeURL',
    'Token',
  ],
  UnsubscribeConfirmation: [
    'MessageId',
    'TopicArn',
    'Message',
    'Timestamp',
    'SignatureVersion',
    'Signature',
    'SigningCertURL',
    'SubscribeURL',
    'Token',
  ],
};

/** Parses the body SNS posts (JSON, sent as text/plain). Unsigned or malformed: rejected. */
export function parseSnsMessage(body: string): SnsMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new SnsRejected('body is not JSON', 400);
  }
  if (!raw || typeof raw !== 'object') throw new SnsRejected('body is not an SNS message', 400);
  const m = raw as Record<string, unknown>;
  const type = m.Type;
  if (type !== 'Notification' && type !== 'SubscriptionConfirmation' && type !== 'UnsubscribeConfirmation') {
    throw new SnsRejected(`unknown SNS message Type ${JSON.stringify(type)}`, 400);
  }
  if (!m.Signature || !m.SigningCertURL || !m.SignatureVersion)
    throw new SnsRejected('message is unsigned (no Signature / SigningCertURL / SignatureVersion)', 403);
  for (const f of REQUIRED[type]) {
    if (typeof m[f] !== 'string') throw new SnsRejected(`${type} lacks ${f}`, 400);
  }
  if (m.Subject !== undefined && m.Subject !== null && typeof m.Subject !== 'string')
    throw new SnsRejected('Subject is not a string', 400);
  return m as unknown as SnsMessage;
}

export class SnsVerifier {
  private readonly certs = new Map<string, Promise<X509Certificate>>();
  private readonly urlAllowed: (url: URL) => boolean;
  private readonly now: () => number;

  constructor(private readonly opts: SnsVerifierOptions) {
    this.urlAllowed = opts.urlAllowed ?? isSnsHostUrl;
    this.now = opts.now ?? Date.now;
  }

  /** Throws SnsRejected unless the message is signed by SNS, fresh, and for an accepted topic. */
  async verify(m: SnsMessage): Promise<void> {
    const algorithm = m.SignatureVersion === '1' ? 'sha1' : m.SignatureVersion === '2' ? 'sha256' : undefined;
    if (!algorithm)
      throw new SnsRejected(`unsupported SignatureVersion ${JSON.stringify(m.SignatureVersion)} (1 or 2)`, 403);
    const certUrl = this.allowedUrl(m.SigningCertURL, 'SigningCertURL');
    if (!certUrl.pathname.endsWith('.pem'))
      throw new SnsRejected(`SigningCertURL ${m.SigningCertURL} is not a .pem certificate`, 403);

    const at = Date.parse(m.Timestamp);
    if (Number.isNaN(at)) throw new SnsRejected(`Timestamp ${JSON.stringify(m.Timestamp)} is not a date`, 400);
    const age = this.now() - at;
    if (age > this.opts.maxAgeMs)
      throw new SnsRejected(
        `stale message: Timestamp ${m.Timestamp} is ${Math.round(age / 1000)} s old (limit ${Math.round(this.opts.maxAgeMs / 1000)} s)`,
        403,
      );
    if (age < -5 * 60_000) throw new SnsRejected(`Timestamp ${m.Timestamp} is in the future`, 403);
    if (this.opts.topicArns?.length && !this.opts.topicArns.includes(m.TopicArn))
      throw new SnsRejected(`topic ${m.TopicArn} is not accepted here`, 403);

    const cert = await this.certificate(certUrl.href);
    const nowDate = new Date(this.now());
    if (new Date(cert.validFrom) > nowDate || new Date(cert.validTo) < nowDate) {
      this.certs.delete(certUrl.href);
      throw new SnsRejected(
        `signing certificate ${certUrl.href} is not valid now (${cert.validFrom} – ${cert.validTo})`,
        403,
      );
    }
    let ok = false;
    try {
      ok = verify(algorithm, Buffer.from(stringToSign(m), 'utf8'), cert.publicKey, Buffer.from(m.Signature, 'base64'));
    } catch {
      ok = false;
    }
    if (!ok) throw new SnsRejected(`signature does not verify against ${certUrl.href}`, 403);
  }

  /** A URL the message names, if it may be fetched. */
  allowedUrl(href: string, what: string): URL {
    let url: URL;
    try {
      url = new URL(href);
    } catch {
      throw new SnsRejected(`${what} ${JSON.stringify(href)} is not a URL`, 403);
    }
    if (!this.urlAllowed(url))
      throw new SnsRejected(
        `${what} ${url.origin} is not an SNS host of AWS (https://sns.<region>.amazonaws.com)`,
        403,
      );
    return url;
  }

  private certificate(href: string): Promise<X509Certificate> {
    let p = this.certs.get(href);
    if (!p) {
      p = (async () => {
        let res: Response;
        try {
          res = await fetch(href, { signal: AbortSignal.timeout(5_000), redirect: 'error' });
        } catch (err) {
          throw new SnsRejected(`cannot fetch the signing certificate ${href}: ${(err as Error).message}`, 403);
        }
        if (!res.ok) throw new SnsRejected(`cannot fetch the signing certificate ${href}: HTTP ${res.status}`, 403);
        const pem = await res.text();
        try {
          return new X509Certificate(pem);
        } catch (err) {
          throw new SnsRejected(`${href} is not an X.509 certificate: ${(err as Error).message}`, 403);
        }
      })();
      this.certs.set(href, p);
      // A failed fetch is not remembered: the next message tries again.
      p.catch(() => this.certs.delete(href));
    }
    return p;
  }

  /** Confirms a subscription: GET SubscribeURL, which must be an SNS host too. */
  async confirm(m: SnsMessage): Promise<void> {
    const url = this.allowedUrl(m.SubscribeURL ?? '', 'SubscribeURL');
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: 'error' });
    await res.arrayBuffer();
    if (!res.ok)
      throw new Error(`confirming the subscription to ${m.TopicArn} failed: HTTP ${res.status} from ${url.origin}`);
  }
}
