// The Poisson distribution: what chain lengths and per-bucket counts look like
// when the kernel's hash spreads entries uniformly (it is keyed per boot, so a
// healthy table is that).

/** P(X = k) for X ~ Poisson(mean), computed in log space (no overflow for big k). */
export function poissonPmf(mean: number, k: number): number {
  if (k < 0 || !Number.isInteger(k)) return 0;
  if (mean === 0) return k === 0 ? 1 : 0;
  return Math.exp(k * Math.log(mean) - mean - logFactorial(k));
}

/** P(X >= k). */
export function poissonTail(mean: number, k: number): number {
  if (k <= 0) return 1;
  let below = 0;
  for (let j = 0; j < k; j++) below += poissonPmf(mean, j);
  // Far in the tail 1 - below loses every digit: sum the tail itself instead.
  if (below < 0.5) return 1 - below;
  let tail = 0;
  for (let j = k; ; j++) {
    const p = poissonPmf(mean, j);
    tail += p;
    if (j > mean && p < tail * 1e-17) break;
  }
  return tail;
}

/** The smallest k with P(X >= k) <= p. */
export function poissonThreshold(mean: number, p: number): number {
  let k = Math.max(1, Math.floor(mean));
  while (poissonTail(mean, k) > p) k++;
  return k;
}

const logFactorials: number[] = [0];

function logFactorial(n: number): number {
  for (let i = logFactorials.length; i <= Math.min(n, 1024); i++) logFactorials[i] = logFactorials[i - 1]! + Math.log(i);
  if (n <= 1024) return logFactorials[n]!;
  // Stirling's series: exact to double precision this far out.
  return n * Math.log(n) - n + 0.5 * Math.log(2 * Math.PI * n) + 1 / (12 * n);
}
