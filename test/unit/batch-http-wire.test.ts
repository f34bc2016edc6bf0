/** Job specs on the batch API's wire: shown as written, so what GET returns goes back through PUT unchanged. */
import { describe, expect, it } from 'vitest';
import { eventFromWire, eventToWire, jobViewFromWire, jobViewToWire, specFromWire, specToWire } from '../../frameworks/batch/http/wire.ts';
import { parseJobSpec, validateJobSpec } from '../../frameworks/batch/index.ts';
import type { JobView } from '../../frameworks/batch/batch-api.ts';

const FULL = `
id: etl.load
description: loads
cmd: ./load.sh $AGORA_TASK_INDEX
cpus: 0.5
mem: 64
disk: 10
env: { A: "1" }
labels: { team: data }
role: batch
constraints: [["hostname", "unique"], ["zone", "LIKE", "eu-.*"], ["rack", "MAX_PER", 2]]
array: "0-9,20-29:5%3"
retries: { count: 2, backoffSeconds: 5s, backoffFactor: 3 }
timeoutSeconds: 1m
killGracePeriodSeconds: 3
schedule: { cron: "0 2 * * *", timezone: Europe/Berlin, concurrencyPolicy: forbid, startingDeadlineSeconds: 10m }
dependencies: [etl.extract, { job: etl.check, condition: afternotok }]
priority: 5
container: { type: DOCKER, docker: { image: "busybox:1", forcePull: true }, volumes: [{ hostPath: /data, containerPath: /data, mode: RO }] }
`;

describe('job specs on the wire', () => {
  it('writes the array as Slurm text and constraints as tuples, and reads back the same spec', () => {
    const spec = parseJobSpec(FULL);
    const wire = JSON.parse(JSON.stringify(specToWire(spec)));
    expect(wire.array).toBe('0-9,20,25%3');
    expect(wire.constraints).toEqual([['hostname', 'UNIQUE'], ['zone', 'LIKE', 'eu-.*'], ['rack', 'MAX_PER', '2']]);
    expect(validateJobSpec(wire)).toEqual(spec);
    expect(specFromWire(wire)).toEqual(spec);
  });

  it('leaves a spec without array or constraints as it is, and specs already in wire form alone', () => {
    const spec = parseJobSpec('id: hello\ncmd: echo hi\n');
    const wire = specToWire(spec);
    expect(wire).toEqual({ ...spec });
    expect(specToWire(wire)).toEqual(wire);
    expect(specToWire({ id: 'x', cmd: 'y', array: '1-3', constraints: [['hostname', 'UNIQUE']] })).toEqual({ id: 'x', cmd: 'y', array: '1-3', constraints: [['hostname', 'UNIQUE']] });
  });

  it('converts the job views in lists and job_changed events both ways', () => {
    const spec = parseJobSpec('id: arr\ncmd: "true"\narray: 0-99%10\n');
    const view: JobView = { spec, createdAtMs: 1, updatedAtMs: 2, activeRuns: 0 };
    const wire = JSON.parse(JSON.stringify(jobViewToWire(view)));
    expect(wire.spec.array).toBe('0-99%10');
    expect(jobViewFromWire(wire)).toEqual(view);
    const event = JSON.parse(JSON.stringify(eventToWire({ type: 'job_changed', jobId: 'arr', job: view })));
    expect(event.job.spec.array).toBe('0-99%10');
    expect(eventFromWire(event)).toEqual({ type: 'job_changed', jobId: 'arr', job: view });
    expect(eventFromWire({ type: 'job_changed', jobId: 'arr' })).toEqual({ type: 'job_changed', jobId: 'arr' });
  });

  it('passes on a spec this version cannot read rather than failing the whole answer', () => {
    expect(specFromWire({ id: 'future', cmd: 'x', someNewField: 1 })).toEqual({ id: 'future', cmd: 'x', someNewField: 1 });
  });
});
