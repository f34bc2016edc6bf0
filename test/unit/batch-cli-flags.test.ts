import { describe, expect, it } from 'vitest';
import { defaultJobId, JobFlagError, jobFromFlags, parseEnvFlags, type JobRunFlags } from '../../frameworks/batch/cli/job-from-flags.ts';
import { validateJobSpec } from '../../frameworks/batch/parse-job-spec.ts';

const fixed = () => 'abc123';

function flagError(flags: JobRunFlags, command: string[] = ['true']): JobFlagError {
  try {
    jobFromFlags(flags, command, { random: fixed });
  } catch (error) {
    if (error instanceof JobFlagError) return error;
    throw error;
  }
  throw new Error('expected the flags to be rejected');
}

describe('jobFromFlags', () => {
  it('keeps the command after -- as args (never a shell line), with a job id from its program', () => {
    const spec = jobFromFlags({}, ['sh', '-c', 'echo hi && sleep 1'], { random: fixed });
    expect(spec).toEqual({ id: 'sh-abc123', args: ['sh', '-c', 'echo hi && sleep 1'], ttlSecondsAfterFinished: 86_400 });
    expect(jobFromFlags({}, ['echo hello world'], { random: fixed }).args).toEqual(['echo hello world']);
    expect(validateJobSpec(spec).args).toEqual(['sh', '-c', 'echo hi && sleep 1']);
  });

  it('turns every flag into its field, and the result passes the schema', () => {
    const spec = jobFromFlags(
      { id: 'render', image: 'busybox:1', cpus: '0.5', mem: '256', disk: '100', env: ['MODE=fast', 'EMPTY=', 'EQ=a=b'], array: '0-99%10', retries: '3', timeout: '1m30s', priority: '-5', ttl: '2h' },
      ['./render.sh'],
    );
    expect(spec).toEqual({
      id: 'render',
      args: ['./render.sh'],
      container: { type: 'DOCKER', docker: { image: 'busybox:1' } },
      cpus: 0.5,
      mem: 256,
      disk: 100,
      env: { MODE: 'fast', EMPTY: '', EQ: 'a=b' },
      array: '0-99%10',
      retries: 3,
      timeoutSeconds: 90,
      priority: -5,
      ttlSecondsAfterFinished: 7200,
    });
    const parsed = validateJobSpec(spec);
    expect(parsed.array).toEqual({ indices: Array.from({ length: 100 }, (_, i) => i), throttle: 10 });
    expect(parsed.retries.count).toBe(3);
    expect(jobFromFlags({ completions: '10', parallelism: '4', timeout: '30' }, ['true'], { random: fixed })).toMatchObject({ completions: 10, parallelism: 4, timeoutSeconds: 30 });
    expect(jobFromFlags({ ttl: '0' }, ['true'], { random: fixed }).ttlSecondsAfterFinished).toBe(0);
  });

  it.each<[JobRunFlags, string, RegExp]>([
    [{ timeout: '5x' }, '--timeout', /"5x" is not a duration; .* --timeout 30s/],
    [{ timeout: '0s' }, '--timeout', /more than 0 seconds/],
    [{ ttl: 'forever' }, '--ttl', /"forever" is not a duration; .* --ttl 1h, 7d or 0 \(a few seconds after it ends\)/],
    [{ array: '9-1' }, '--array', /"9-1" the range 9-1 runs backwards; write 1-9/],
    [{ array: '0-9%0' }, '--array', /throttle/],
    [{ array: '0-9', parallelism: '2' }, '--array', /not both; the throttle goes after "%"/],
    [{ cpus: 'two' }, '--cpus', /"two" is not a number, e\.g\. --cpus 0\.5/],
    [{ cpus: '0' }, '--cpus', /more than 0/],
    [{ mem: '-1' }, '--mem', /more than 0/],
    [{ disk: '1.5' }, '--disk', /whole number/],
    [{ completions: '0' }, '--completions', /1 or more/],
    [{ parallelism: '2.5' }, '--parallelism', /whole number/],
    [{ retries: '-1' }, '--retries', /0 or more/],
    [{ priority: '5000' }, '--priority', /-1000 to 1000/],
    [{ priority: 'high' }, '--priority', /not a number/],
    [{ env: ['NOVALUE'] }, '--env', /"NOVALUE" is not NAME=VALUE/],
    [{ env: ['1X=y'] }, '--env', /"1X" is not a valid environment variable name/],
    [{ id: 'My_Job' }, '--id', /"My_Job" must be lowercase letters/],
    [{ image: ' ' }, '--image', /must name an image/],
    [{ completions: '200000' }, '--completions', /at most 100000/], // caught by the schema, named by the flag
  ])('rejects %j naming %s', (flags, flag, message) => {
    const error = flagError(flags);
    expect(error.flag).toBe(flag);
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`${flag}: `)).toBe(true);
  });

  it('asks for a command when none follows --', () => {
    const error = flagError({}, []);
    expect(error.flag).toBe('command');
    expect(error.message).toMatch(/say what to run after "--"/);
  });
});

describe('defaultJobId', () => {
  it('makes a valid job id from any program path', () => {
    expect(defaultJobId(['/usr/bin/Python3.12'], fixed)).toBe('python3.12-abc123');
    expect(defaultJobId(['./My Script!.sh'], fixed)).toBe('my-script-sh-abc123');
    expect(defaultJobId(['___'], fixed)).toBe('run-abc123');
    expect(defaultJobId(['x'.repeat(200)], fixed)).toBe(`${'x'.repeat(40)}-abc123`);
    for (const program of ['/bin/sh', 'A..B', '-x-', '.hidden', 'ünïcode', 'a'.repeat(39) + '.b']) {
      expect(defaultJobId([program])).toMatch(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/);
    }
  });

  it('differs from run to run', () => {
    expect(defaultJobId(['true'])).not.toBe(defaultJobId(['true']));
  });
});

describe('parseEnvFlags', () => {
  it('lets a later value win', () => {
    expect(parseEnvFlags(['A=1', 'A=2'])).toEqual({ A: '2' });
  });
});
