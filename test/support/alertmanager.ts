// The webhook Alertmanager posts to the intake when the ledger's primary stops accepting writes
// (firing) or does again (resolved), as its docs give the payload (version 4).
export function ledgerPrimaryDown(
  status: 'firing' | 'resolved',
  region: string,
  labels: Record<string, string> = {},
): unknown {
  const now = new Date().toISOString();
  return {
    version: '4',
    groupKey: '{}:{alertname="LedgerPrimaryDown"}',
    status,
    receiver: 'regionshift',
    groupLabels: { alertname: 'LedgerPrimaryDown' },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.test',
    alerts: [
      {
        status,
        labels: { alertname: 'LedgerPrimaryDown', region, severity: 'page', ...labels },
        annotations: { summary: `ledger primary in ${region} is not accepting writes` },
        startsAt: now,
        endsAt: status === 'resolved' ? now : '0001-01-01T00:00:00Z',
        generatorURL: 'http://prometheus.test/graph',
        fingerprint: `c0ffee-${region}`,
      },
    ],
  };
}
