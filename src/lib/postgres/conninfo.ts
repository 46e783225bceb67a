// libpq keyword/value connection strings (primary_conninfo), edited without losing what the
// operator put there: user, password file, sslmode and the rest stay as they were.

/** Pairs in order, or undefined for a form we do not edit (a URI, or text that does not parse). */
export function parseConninfo(text: string): Array<[string, string]> | undefined {
  const s = text.trim();
  if (/^postgres(ql)?:\/\//.test(s)) return undefined;
  const pairs: Array<[string, string]> = [];
  let i = 0;
  while (i < s.length) {
    while (/\s/.test(s[i] ?? '')) i++;
    if (i >= s.length) break;
    const key = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i))?.[0];
    if (!key) return undefined;
    i += key.length;
    while (/\s/.test(s[i] ?? '')) i++;
    if (s[i] !== '=') return undefined;
    i++;
    while (/\s/.test(s[i] ?? '')) i++;
    let value = '';
    if (s[i] === "'") {
      i++;
      for (;;) {
        if (i >= s.length) return undefined; // unterminated quote
        const c = s[i]!;
        if (c === '\\' && i + 1 < s.length) {
          value += s[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
    } else {
      while (i < s.length && !/\s/.test(s[i]!)) {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        value += s[i];
        i++;
      }
    }
    pairs.push([key, value]);
  }
  return pairs;
}

export function formatConninfo(pairs: Array<[string, string]>): string {
  const quote = (v: string): string =>
    v !== '' && /^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return pairs.map(([k, v]) => `${k}=${quote(v)}`).join(' ');
}

/** The same conninfo aimed at another server; undefined when it is not one we can edit. */
export function withServer(text: string, host: string, port: number): string | undefined {
  const pairs = parseConninfo(text);
  if (!pairs) return undefined;
  const kept = pairs.filter(([k]) => k !== 'host' && k !== 'hostaddr' && k !== 'port');
  return formatConninfo([['host', host], ['port', String(port)], ...kept]);
}
