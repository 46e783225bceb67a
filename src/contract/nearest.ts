// A typo's likely meaning, for messages that refuse a name: an unknown action, an unknown command.

/** What a typo most likely meant: the names that start with it (two at most), or the one within three edits. */
export function nearest(typed: string, known: string[]): string | undefined {
  const prefixed = known.filter((k) => k.startsWith(typed));
  if (prefixed.length > 0 && prefixed.length <= 2) return prefixed.join(' or ');
  const ranked = known.map((k) => ({ k, d: editDistance(typed.toLowerCase(), k.toLowerCase()) }));
  const best = ranked.reduce((a, b) => (b.d < a.d ? b : a));
  return best.d <= 3 && ranked.filter((r) => r.d === best.d).length === 1 ? best.k : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}
