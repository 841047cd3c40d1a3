/** "did you mean ...?" suggestions for tables, fields, environments and commands. */

export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const prev = new Array<number>(t.length + 1);
  for (let j = 0; j <= t.length; j++) prev[j] = j;
  for (let i = 1; i <= s.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= t.length; j++) {
      const above = prev[j]!;
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      prev[j] = Math.min(above + 1, prev[j - 1]! + 1, diag + cost);
      diag = above;
    }
  }
  return prev[t.length]!;
}

/** Up to `max` candidates close to `input`: case-insensitive matches and prefixes first, then edit distance. */
export function suggest(input: string, candidates: Iterable<string>, max = 3): string[] {
  const lower = input.toLowerCase();
  const scored: Array<{ name: string; score: number }> = [];
  for (const name of candidates) {
    const cand = name.toLowerCase();
    let score: number;
    if (cand === lower) score = 0;
    else if (cand.startsWith(lower) || lower.startsWith(cand)) score = 1;
    else if (cand.includes(lower)) score = 2;
    else {
      const d = editDistance(lower, cand);
      if (d > Math.max(2, Math.floor(Math.max(lower.length, cand.length) / 3))) continue;
      score = 2 + d;
    }
    scored.push({ name, score });
  }
  scored.sort((x, y) => x.score - y.score || x.name.localeCompare(y.name));
  return scored.slice(0, max).map((s) => s.name);
}

/** " (did you mean A or B?)" or "" */
export function didYouMean(input: string, candidates: Iterable<string>): string {
  const found = suggest(input, candidates);
  if (found.length === 0) return '';
  const list = found.length === 1 ? found[0] : `${found.slice(0, -1).join(', ')} or ${found[found.length - 1]}`;
  return `did you mean ${list}?`;
}
