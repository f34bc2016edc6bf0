import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatArray, parseArray, ArraySpecError } from '../../frameworks/batch/array-spec.ts';
import { parseDurationSeconds, taskPlan } from '../../frameworks/batch/job-spec.ts';
import { JobSpecError, parseJobSpec, validateJobSpec } from '../../frameworks/batch/parse-job-spec.ts';

function problems(text: string): Record<string, string> {
  try {
    parseJobSpec(text);
  } catch (error) {
    if (!(error instanceof JobSpecError)) throw error;
    return Object.fromEntries(error.problems.map((p) => [p.field, p.message]));
  }
  throw new Error('expected the spec to be rejected');
}

describe('parseArray', () => {
  it('reads a range with a throttle', () => {
    const array = parseArray('0-99%10');
    expect(array.indices).toHaveLength(100);
    expect(array.indices[0]).toBe(0);
    expect(array.indices[99]).toBe(99);
    expect(array.throttle).toBe(10);
  });
  it('reads lists, steps and duplicates, sorted', () => {
    expect(parseArray('7,1-3,0-8:4,3')).toEqual({ indices: [0, 1, 2, 3, 4, 7, 8] });
  });
  it.each([
    ['', /empty/],
    ['5-2', /backwards; write 2-5/],
    ['0-9%0', /throttle .* 1 or more/],
    ['0-9%x', /whole number/],
    ['0-9%2%3', /more than one "%"/],
    ['%4', /no indices/],
    ['1,,2', /empty item/],
    ['a-b', /cannot read "a-b"/],
    ['0-9:0', /step/],
    ['0-200000', /more than 100000 tasks/],
  ])('rejects %j with a clear error', (spec, message) => {
    expect(() => parseArray(spec)).toThrow(ArraySpecError);
    expect(() => parseArray(spec)).toThrow(message);
  });
  it('formats back to text that parses to the same array', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(500), { minLength: 1, maxLength: 60 }), fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }), (raw, throttle) => {
        const indices = [...raw].sort((a, b) => a - b);
        const array = throttle === undefined ? { indices } : { indices, throttle };
        expect(parseArray(formatArray(array))).toEqual(array);
      }),
    );
  });
});

describe('parseJobSpec', () => {
  it('fills the defaults for a minimal job', () => {
    const spec = parseJobSpec('id: hello\ncmd: echo hi\n');
    expect(spec).toMatchObject({ id: 'hello', cmd: 'echo hi', cpus: 1, mem: 128, disk: 0, role: '*', priority: 0, dependencies: [], env: {}, constraints: [] });
    expect(spec.retries).toEqual({ count: 0, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 360 });
    expect(spec.timeoutSeconds).toBeUndefined();
    expect(taskPlan(spec)).toEqual({ indices: [0], maxRunning: 1 });
  });

  it('reads a full spec in JSON with shorthands', () => {
    const spec = parseJobSpec(
      JSON.stringify({
        id: 'etl.load',
        args: ['python', 'load.py'],
        container: { docker: { image: 'python:3.12' } },
        array: '0-99%10',
        retries: 3,
        timeoutSeconds: '5m',
        schedule: { cron: '0 2 * * *', timezone: 'Europe/Berlin', concurrencyPolicy: 'forbid' },
        dependencies: ['etl.extract', { job: 'cleanup', condition: 'AFTERANY' }],
        constraints: [['hostname', 'UNIQUE']],
        priority: 5,
      }),
    );
    expect(spec.retries.count).toBe(3);
    expect(spec.timeoutSeconds).toBe(300);
    expect(spec.schedule).toEqual({ cron: '0 2 * * *', timezone: 'Europe/Berlin', concurrencyPolicy: 'FORBID', startingDeadlineSeconds: 900, enabled: true });
    expect(spec.dependencies).toEqual([{ job: 'etl.extract', condition: 'afterok' }, { job: 'cleanup', condition: 'afterany' }]);
    expect(spec.constraints).toEqual([{ field: 'hostname', operator: 'UNIQUE' }]);
    const plan = taskPlan(spec);
    expect(plan.indices).toHaveLength(100);
    expect(plan.maxRunning).toBe(10);
  });

  it('plans indexed completions with parallelism (Kubernetes Indexed Job)', () => {
    expect(taskPlan(validateJobSpec({ id: 'a', cmd: 'true', completions: 5, parallelism: 2 }))).toEqual({ indices: [0, 1, 2, 3, 4], maxRunning: 2 });
    expect(taskPlan(validateJobSpec({ id: 'a', cmd: 'true', completions: 2, parallelism: 9 })).maxRunning).toBe(2);
    expect(taskPlan(validateJobSpec({ id: 'a', cmd: 'true', array: '0-9' })).maxRunning).toBe(10);
  });

  it('names every bad field', () => {
    expect(
      problems(
        [
          'id: Bad_Id',
          'cpus: -1',
          'array: 5-2',
          'completions: 3',
          'retries: {count: 1.5, backofSeconds: 3}',
          'timeoutSeconds: soon',
          'schedule: {cron: "61 * * * *", concurrencyPolicy: SOMETIMES}',
          'dependencies: [{job: Bad_Id, condition: after}]',
          'priority: 1e9',
          'colour: blue',
        ].join('\n'),
      ),
    ).toEqual({
      id: expect.stringMatching(/lowercase letters/),
      cpus: 'must be more than 0',
      array: 'the range 5-2 runs backwards; write 2-5',
      'retries.count': 'must be a whole number',
      'retries.backofSeconds': 'unknown field; did you mean backoffSeconds?',
      timeoutSeconds: expect.stringMatching(/duration like "30s"/),
      'schedule.cron': expect.stringMatching(/not a valid cron expression/),
      'schedule.concurrencyPolicy': 'must be ALLOW, FORBID or REPLACE',
      'dependencies[0].job': expect.stringMatching(/lowercase letters/),
      'dependencies[0].condition': 'must be afterok, afterany or afternotok',
      priority: 'must be -1000 to 1000',
      colour: 'unknown field; remove it',
    });
  });

  it('explains cross-field mistakes', () => {
    expect(problems('id: a\ncmd: x\nargs: [y]\narray: "0-9"\nparallelism: 2\ncompletions: 3\ndependencies: [a, b, b]')).toEqual({
      args: expect.stringMatching(/not both/),
      parallelism: expect.stringMatching(/after "%"/),
      completions: expect.stringMatching(/`array` or `completions`/),
      'dependencies[0].job': 'a job cannot depend on itself',
      'dependencies[2].job': 'b is listed twice',
    });
    expect(problems('id: a')).toEqual({ cmd: expect.stringMatching(/say what to run/) });
    expect(problems('id: a\ncmd: x\nschedule: {cron: "@daily", timezone: Mars/Olympus}')).toEqual({ 'schedule.timezone': expect.stringMatching(/unknown time zone/) });
    expect(problems('id: a\ncmd: x\nttlSecondsAfterFinished: 1h\nschedule: {cron: "@daily"}')).toEqual({ ttlSecondsAfterFinished: expect.stringMatching(/a scheduled job never finishes/) });
    expect(problems('id: a\ncmd: x\nttlSecondsAfterFinished: -1')).toEqual({ ttlSecondsAfterFinished: 'must be 0 or more seconds' });
  });

  it('reports unreadable text and non-objects at the document', () => {
    expect(problems('id: [unclosed')).toEqual({ '': expect.stringMatching(/not valid YAML \(line/) });
    expect(problems('{"id": ')).toEqual({ '': expect.stringMatching(/not valid JSON/) });
    expect(problems('- a\n- b')).toEqual({ '': expect.stringMatching(/must be an object/) });
    expect(() => parseJobSpec('id: 1', 'yaml', 'job.yaml')).toThrow(/invalid job spec in job\.yaml/);
  });

  it('reads durations', () => {
    expect(parseDurationSeconds('1h30m')).toBe(5400);
    expect(parseDurationSeconds('250ms')).toBe(0.25);
    expect(parseDurationSeconds('45')).toBe(45);
    expect(parseDurationSeconds('soon')).toBeUndefined();
  });
});
