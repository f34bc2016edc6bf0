import { describe, expect, it } from 'vitest';
import { Inbound } from '../../master/protocol/index.ts';
import { DecodeError, validateMessage } from '../../master/protocol/codec.ts';

const accept = (task: Record<string, unknown>) => ({
  type: 'ACCEPT',
  offerIds: ['o1'],
  operations: [{ type: 'LAUNCH', tasks: [{ taskId: 't', resources: { cpus: 1 }, command: { value: 'true' }, ...task }] }],
});

function errorOf(message: unknown): string {
  try {
    validateMessage(Inbound.schedulerCalls.schema, Inbound.schedulerCalls.knownTypes, message);
  } catch (error) {
    if (error instanceof DecodeError) return error.message;
    throw error;
  }
  return '';
}

describe('task info validation', () => {
  it('accepts a Docker container with port mappings and a health check', () => {
    expect(
      errorOf(
        accept({
          container: { type: 'DOCKER', docker: { image: 'agora-test/busybox', network: 'BRIDGE', portMappings: [{ containerPort: 80 }] } },
          healthCheck: { type: 'HTTP', http: { portIndex: 0, path: '/' }, intervalSeconds: 1 },
        }),
      ),
    ).toBe('');
  });

  it('names the field of a health check without its details', () => {
    expect(errorOf(accept({ healthCheck: { type: 'TCP' } }))).toMatch(/ACCEPT\.operations\[0\]\.tasks\[0\]\.healthCheck: a HTTP check needs `http`, a TCP check `tcp`/);
  });

  it('names a relative volume path', () => {
    expect(errorOf(accept({ container: { type: 'DOCKER', docker: { image: 'x' }, volumes: [{ hostPath: 'data', containerPath: '/data' }] } }))).toMatch(
      /tasks\[0\]\.container\.volumes\[0\]\.hostPath: must be an absolute path/,
    );
  });

  it('refuses a task id that could escape its sandbox directory', () => {
    expect(errorOf(accept({ taskId: '../etc' }))).toMatch(/tasks\[0\]\.taskId: must be 1-200 characters/);
  });
});
