/**
 * How job specs travel over HTTP: in the form people write them, so what `GET /v1/jobs/{id}`
 * returns can be edited and PUT back. A validated JobSpec holds two fields in parsed form — the
 * array as its indices (`{indices: [0 … 99], throttle: 10}`) and constraints as objects — which the
 * spec schema does not read back; on the wire they are `"0-99%10"` and `["hostname", "UNIQUE"]`.
 * The client turns them back into a JobSpec.
 */
import { formatArray, type ArraySpec } from '../array-spec.ts';
import type { BatchEvent, JobView } from '../batch-api.ts';
import type { JobSpec } from '../job-spec.ts';
import { validateJobSpec } from '../parse-job-spec.ts';

/** A job spec as JSON a person (or `PUT`) can read back: array as a string, constraints as tuples. */
export function specToWire(spec: JobSpec | Record<string, unknown>): Record<string, unknown> {
  const wire: Record<string, unknown> = { ...(spec as Record<string, unknown>) };
  const array = wire.array;
  if (isArraySpec(array)) wire.array = formatArray(array);
  if (Array.isArray(wire.constraints)) wire.constraints = wire.constraints.map(constraintToWire);
  return wire;
}

/** Back from the wire form to a JobSpec; a spec this version cannot read is passed on as it came. */
export function specFromWire(wire: unknown): JobSpec {
  try {
    return validateJobSpec(wire);
  } catch {
    return wire as JobSpec;
  }
}

export function jobViewToWire(view: JobView): Record<string, unknown> {
  return { ...view, spec: specToWire(view.spec) };
}

export function jobViewFromWire(wire: unknown): JobView {
  const view = wire as JobView;
  return { ...view, spec: specFromWire(view.spec) };
}

export function eventToWire(event: BatchEvent): unknown {
  return event.type === 'job_changed' && event.job ? { ...event, job: jobViewToWire(event.job) } : event;
}

export function eventFromWire(wire: unknown): BatchEvent {
  const event = wire as BatchEvent;
  return event.type === 'job_changed' && event.job ? { ...event, job: jobViewFromWire(event.job) } : event;
}

function isArraySpec(value: unknown): value is ArraySpec {
  return typeof value === 'object' && value !== null && Array.isArray((value as ArraySpec).indices);
}

function constraintToWire(constraint: unknown): unknown {
  if (typeof constraint !== 'object' || constraint === null || Array.isArray(constraint)) return constraint;
  const { field, operator, value } = constraint as { field: string; operator: string; value?: string };
  return value === undefined ? [field, operator] : [field, operator, value];
}
