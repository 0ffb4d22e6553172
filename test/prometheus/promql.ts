// PromQL rewriting for the tests: an alert's comparisons made `bool`, so the
// expression answers 0 or 1 for every series it selects instead of filtering them
// out (a healthy node's alert expression selects series but returns none).

const COMPARISONS = ['==', '!=', '>=', '<=', '>', '<'];

/** `a > 0.8` -> `a > bool 0.8`, leaving label matchers (`{stat!="x"}`), strings
 * and comparisons already `bool` alone. */
export function withBoolComparisons(expr: string): string {
  let out = '';
  let braces = 0;
  let quote: string | null = null;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (quote) {
      out += c;
      if (c === '\\') out += expr[++i] ?? '';
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') quote = c;
    else if (c === '{') braces++;
    else if (c === '}') braces--;
    const op = braces === 0 ? COMPARISONS.find((o) => expr.startsWith(o, i)) : undefined;
    if (!op) {
      out += c;
      continue;
    }
    out += op;
    i += op.length - 1;
    if (!/^\s*bool\b/.test(expr.slice(i + 1))) out += /^\s/.test(expr.slice(i + 1)) ? ' bool' : ' bool ';
  }
  return out;
}
