/**
 * Slurm's `--array` syntax: `0-99%10` is indices 0 to 99 with at most 10 running at once.
 * Accepted: single indices and ranges separated by commas, a range may carry a step
 * (`0-15:4` = 0, 4, 8, 12), and one optional `%N` throttle at the end: `1,3,10-20:2%4`.
 */

/** Slurm's MaxArraySize default is 1001; we allow more, but not so many that a typo eats the memory. */
export const MAX_ARRAY_TASKS = 100_000;
export const MAX_ARRAY_INDEX = 4_000_000;

export interface ArraySpec {
  /** Sorted, without duplicates. */
  indices: number[];
  /** At most this many tasks running at once; undefined = no limit (Slurm's default). */
  throttle?: number;
}

export class ArraySpecError extends Error {
  override name = 'ArraySpecError';
  constructor(
    readonly spec: string,
    readonly problem: string,
  ) {
    super(`invalid array ${JSON.stringify(spec)}: ${problem}`);
  }
}

const EXAMPLE = 'e.g. 0-99%10, 1,3,5-7 or 0-15:4';

/** Parses `0-99%10`; throws ArraySpecError saying what is wrong and what would be right. */
export function parseArray(spec: string): ArraySpec {
  const text = spec.replace(/\s+/g, '');
  const fail = (problem: string): never => {
    throw new ArraySpecError(spec, problem);
  };
  if (text === '') fail(`is empty; give indices, ${EXAMPLE}`);
  const [list = '', throttleText, ...extra] = text.split('%');
  if (extra.length > 0) fail('has more than one "%"; the throttle comes once, at the end');
  let throttle: number | undefined;
  if (throttleText !== undefined) {
    if (!/^\d+$/.test(throttleText)) fail(`the throttle after "%" must be a whole number, got ${JSON.stringify(throttleText)}`);
    throttle = Number(throttleText);
    if (throttle < 1) fail('the throttle after "%" must be 1 or more');
  }
  if (list === '') fail(`has no indices before "%"; ${EXAMPLE}`);
  const indices = new Set<number>();
  for (const item of list.split(',')) {
    const match = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(item);
    if (!match) fail(item === '' ? 'has an empty item (two commas, or one at an end)' : `cannot read ${JSON.stringify(item)}; use N, N-M or N-M:STEP (${EXAMPLE})`);
    const first = Number(match![1]);
    const last = match![2] === undefined ? first : Number(match![2]);
    const step = match![3] === undefined ? 1 : Number(match![3]);
    if (last < first) fail(`the range ${item} runs backwards; write ${last}-${first}`);
    if (step < 1) fail(`the step in ${item} must be 1 or more`);
    if (last > MAX_ARRAY_INDEX) fail(`index ${last} is above the largest allowed index ${MAX_ARRAY_INDEX}`);
    for (let i = first; i <= last; i += step) {
      indices.add(i);
      if (indices.size > MAX_ARRAY_TASKS) fail(`holds more than ${MAX_ARRAY_TASKS} tasks; split the work into several jobs`);
    }
  }
  const sorted = [...indices].sort((a, b) => a - b);
  return throttle === undefined ? { indices: sorted } : { indices: sorted, throttle };
}

/** The canonical text for parsed indices (ranges collapsed), for display: `0-99%10`. */
export function formatArray(array: ArraySpec): string {
  const parts: string[] = [];
  const { indices } = array;
  for (let i = 0; i < indices.length; ) {
    let j = i;
    while (j + 1 < indices.length && indices[j + 1] === indices[j]! + 1) j++;
    parts.push(j === i ? `${indices[i]}` : `${indices[i]}-${indices[j]}`);
    i = j + 1;
  }
  return parts.join(',') + (array.throttle === undefined ? '' : `%${array.throttle}`);
}
