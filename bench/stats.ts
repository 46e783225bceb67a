// Figures over several runs, and the nested object every bench section adds its figures to.

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** `decimals`: a ratio keeps two (1.18 must not read as 1); milliseconds keep none. */
export function spread(samples: number[], decimals = 0): Spread {
  if (samples.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const scale = 10 ** decimals;
  return { median: Math.round(median * scale) / scale, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

export type Figures = { [key: string]: unknown };

function isPlainObject(v: unknown): v is Figures {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Merges b into a, recursively; two sections writing the same leaf is a bug and says which. */
export function deepMerge(a: Figures, b: Figures, path = ''): Figures {
  const out: Figures = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const here = path ? `${path}.${key}` : key;
    const existing = out[key];
    if (isPlainObject(existing) && isPlainObject(value)) out[key] = deepMerge(existing, value, here);
    else if (existing !== undefined) throw new Error(`two bench sections both report ${here}`);
    else out[key] = value;
  }
  return out;
}
