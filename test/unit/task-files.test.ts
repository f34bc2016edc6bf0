/**
 * The pieces behind reading task files through the master: the HTTP route's parsing, the protocol
 * messages (and that the biggest FILE_DATA fits a frame), the agent's sandbox reader, and the SDK's
 * URL handling.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSandboxFile, type SandboxFileRead } from '../../agent/file-reader.ts';
import { masterHttpUrl } from '../../frameworks/sdk/task-files.ts';
import { parseTaskFileRequest, statusForKind } from '../../master/http/task-files.ts';
import { createPackr } from '../../master/protocol/codec.ts';
import { DecodeError, Inbound, MAX_FILE_DATA_BYTES, MAX_FILE_READ_BYTES, MAX_PAYLOAD_BYTES } from '../../master/protocol/index.ts';
import { validateMessage } from '../../master/protocol/codec.ts';

const route = '/api/v1/frameworks/fw-1/tasks/task-1/files/stdout';

function parse(path: string, query = '') {
  return parseTaskFileRequest(path, new URLSearchParams(query));
}

describe('parseTaskFileRequest', () => {
  it('defaults to the first MiB', () => {
    expect(parse(route)).toEqual({ ok: true, request: { frameworkId: 'fw-1', taskId: 'task-1', file: 'stdout', offset: 0, length: MAX_FILE_READ_BYTES } });
  });

  it('takes offset and length, and decodes ids', () => {
    expect(parse('/api/v1/frameworks/fw%2D1/tasks/a%3Ab/files/stderr', 'offset=123&length=1')).toEqual({
      ok: true,
      request: { frameworkId: 'fw-1', taskId: 'a:b', file: 'stderr', offset: 123, length: 1 },
    });
    expect(parse(route, `offset=${Number.MAX_SAFE_INTEGER}`)).toMatchObject({ ok: true });
  });

  it.each([
    ['/api/v1/frameworks/fw-1/tasks/task-1/files/stdin', '', /unknown file "stdin"; a task's files are stdout and stderr/],
    ['/api/v1/frameworks/fw-1/tasks/task-1/files/%2E%2E%2Fmeta', '', /unknown file "..\/meta"/],
    ['/api/v1/frameworks/fw-1/tasks/..%2F..%2Fetc/files/stdout', '', /the task id "..\/..\/etc" must be 1-200 characters/],
    ['/api/v1/frameworks/%2E%2E/tasks/t/files/stdout', '', /the framework id ".." must be/],
    ['/api/v1/frameworks/fw-1/tasks/%ZZ/files/stdout', '', /the task id "%ZZ" is not valid URL encoding/],
    [route, 'offset=-1', /offset must be a whole number of bytes, 0 or more; got "-1"/],
    [route, 'offset=1.5', /offset must be/],
    [route, 'offset=', /offset must be .*got ""/],
    [route, 'offset=99999999999999999', /offset must be/],
    [route, 'length=0', /length must be a whole number of bytes from 1 to 1048576 \(1 MiB\); got "0"/],
    [route, `length=${MAX_FILE_READ_BYTES + 1}`, /length must be/],
    [route, 'length=1e3', /length must be/],
  ])('refuses %s?%s', (path, query, error) => {
    const parsed = parse(path, query);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.status).toBe(400);
      expect(parsed.error).toMatch(error);
    }
  });

  it('maps each failure to the HTTP status the route documents', () => {
    expect([statusForKind('INVALID'), statusForKind('NOT_FOUND'), statusForKind('UNAVAILABLE'), statusForKind('TIMEOUT'), statusForKind('UNSUPPORTED'), statusForKind('FAILED')]).toEqual([
      400, 404, 503, 504, 501, 502,
    ]);
  });
});

describe('READ_FILE and FILE_DATA', () => {
  const readFile = { type: 'READ_FILE', requestId: 'r1', frameworkId: 'f', taskId: 't', file: 'stdout', offset: 0, length: 10 };
  const validate = (message: unknown) => validateMessage(Inbound.masterToAgent.schema, Inbound.masterToAgent.knownTypes, message);

  it('accepts a read of stdout or stderr within 1 MiB', () => {
    expect(validate(readFile)).toEqual(readFile);
    expect(validate({ ...readFile, file: 'stderr', length: MAX_FILE_READ_BYTES })).toMatchObject({ length: MAX_FILE_READ_BYTES });
  });

  it.each([
    [{ file: 'meta' }, /READ_FILE\.file/],
    [{ length: 0 }, /READ_FILE\.length/],
    [{ length: MAX_FILE_READ_BYTES + 1 }, /READ_FILE\.length/],
    [{ offset: -1 }, /READ_FILE\.offset/],
    [{ taskId: '../x' }, /READ_FILE\.taskId/],
  ])('refuses %j', (change, error) => {
    expect(() => validate({ ...readFile, ...change })).toThrow(DecodeError);
    expect(() => validate({ ...readFile, ...change })).toThrow(error);
  });

  it('fits the biggest FILE_DATA in one frame', () => {
    const frame = createPackr().pack({ type: 'FILE_DATA', requestId: 'r'.repeat(100), data: Buffer.alloc(MAX_FILE_DATA_BYTES), size: Number.MAX_SAFE_INTEGER });
    expect(frame.length).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
  });
});

describe('readSandboxFile', () => {
  const root = mkdtempSync(join(tmpdir(), 'agora-file-reader-'));
  const sandboxes = join(root, 'sandboxes');
  const sandbox = join(sandboxes, 'fw', 'task');
  mkdirSync(sandbox, { recursive: true });
  writeFileSync(join(sandbox, 'stdout'), 'hello, world\n');
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const read = (change: Partial<SandboxFileRead> = {}) =>
    readSandboxFile({ sandboxesRoot: sandboxes, sandbox, taskId: 'task', file: 'stdout', offset: 0, length: 100, ...change });

  it('reads from an offset, bounded by length, and reports the size', async () => {
    expect(await read()).toEqual({ data: Buffer.from('hello, world\n'), size: 13 });
    expect(await read({ offset: 7, length: 5 })).toEqual({ data: Buffer.from('world'), size: 13 });
    expect(await read({ offset: 50 })).toEqual({ data: Buffer.alloc(0), size: 13 });
  });

  it('answers at most MAX_FILE_DATA_BYTES, however much is asked', async () => {
    const big = join(sandboxes, 'fw', 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'stderr'), Buffer.alloc(MAX_FILE_DATA_BYTES + 10, 'x'));
    const result = await read({ sandbox: big, file: 'stderr', length: MAX_FILE_READ_BYTES });
    expect('data' in result && result.data.length).toBe(MAX_FILE_DATA_BYTES);
    expect('data' in result && result.size).toBe(MAX_FILE_DATA_BYTES + 10);
  });

  it('says the sandbox is gone, or, for a task still starting, that nothing is written yet', async () => {
    const missing = join(sandboxes, 'fw', 'missing');
    expect(await read({ sandbox: missing, taskId: 'missing' })).toEqual({
      error: { code: 'NOT_FOUND', message: 'the sandbox of task missing is gone (garbage-collected or never created)' },
    });
    expect(await read({ sandbox: missing, starting: true })).toEqual({ data: Buffer.alloc(0), size: 0 });
    expect(await read({ file: 'stderr' })).toMatchObject({ error: { code: 'NOT_FOUND', message: expect.stringMatching(/task task has no stderr/) } });
  });

  it('refuses a stdout the task replaced with a symlink or a FIFO', async () => {
    const evil = join(sandboxes, 'fw', 'evil');
    mkdirSync(evil);
    writeFileSync(join(root, 'secret'), 'host secret');
    symlinkSync(join(root, 'secret'), join(evil, 'stdout'));
    expect(await read({ sandbox: evil })).toMatchObject({ error: { code: 'INVALID', message: expect.stringMatching(/symbolic link.*refusing to follow it/) } });
    execFileSync('mkfifo', [join(evil, 'stderr')]);
    expect(await read({ sandbox: evil, file: 'stderr' })).toMatchObject({ error: { code: 'INVALID', message: expect.stringMatching(/not a regular file/) } });
  });

  it('refuses a sandbox that is a symlink or lies outside the sandboxes directory', async () => {
    symlinkSync(root, join(sandboxes, 'fw', 'linked'));
    expect(await read({ sandbox: join(sandboxes, 'fw', 'linked') })).toMatchObject({ error: { code: 'INVALID', message: expect.stringMatching(/is not a directory/) } });
    expect(await read({ sandbox: root })).toMatchObject({ error: { code: 'INVALID', message: expect.stringMatching(/not under the agent's sandboxes directory/) } });
    expect(await read({ file: 'meta' as 'stdout' })).toMatchObject({ error: { code: 'INVALID' } });
  });
});

describe('masterHttpUrl', () => {
  it('turns the ws:// URL agents and schedulers dial into the HTTP one', () => {
    expect(masterHttpUrl('ws://127.0.0.1:5050')).toBe('http://127.0.0.1:5050');
    expect(masterHttpUrl('wss://master.example:443/')).toBe('https://master.example');
    expect(masterHttpUrl('http://[::1]:5050/api/v1/scheduler')).toBe('http://[::1]:5050');
  });

  it('names a URL it cannot use', () => {
    expect(() => masterHttpUrl('ftp://127.0.0.1:5050')).toThrow(/use ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//);
    expect(() => masterHttpUrl('127.0.0.1:5050')).toThrow(/is not a master URL; give one like ws:\/\/127.0.0.1:5050/);
  });
});
