/** The few statistics the benchmarks print. */

/** The middle value (the upper one of an even count); by `key` for records. */
export function median(values: number[]): number;
export function median<T>(values: T[], key: (value: T) => number): T;
export function median<T>(values: T[], key?: (value: T) => number): T {
  const of = key ?? ((value: T) => value as unknown as number);
  const sorted = [...values].sort((a, b) => of(a) - of(b));
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The p-th percentile (nearest rank); NaN for none. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
