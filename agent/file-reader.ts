/**
 * Reads part of a task's stdout or stderr from its sandbox, for READ_FILE (the master's
 * /api/v1/frameworks/{id}/tasks/{id}/files/{name}).
 *
 * The sandbox is writable by the task (a Docker task has it mounted read-write), so nothing in it
 * is trusted: the file is opened with O_NOFOLLOW and must be a regular file, and the sandbox
 * itself must be a real directory under the agent's sandboxes root — a task that swaps its stdout
 * for a symlink to a host file gets an error, not the host file.
 */
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import path from 'node:path';
import { MAX_FILE_DATA_BYTES, TASK_FILES, type FileErrorCode, type TaskFileName } from '../master/protocol/messages.ts';

export interface SandboxFileRead {
  /** `workDir/sandboxes`: the sandbox must lie inside it. */
  sandboxesRoot: string;
  /** The task's sandbox directory. */
  sandbox: string;
  taskId: string;
  file: TaskFileName;
  offset: number;
  length: number;
  /**
   * The task is still starting: a missing sandbox or file means "nothing written yet" (an empty
   * read of a 0-byte file), not "gone".
   */
  starting?: boolean;
}

export type SandboxFileResult = { data: Buffer; size: number } | { error: { code: FileErrorCode; message: string } };

export async function readSandboxFile(request: SandboxFileRead): Promise<SandboxFileResult> {
  const { sandboxesRoot, sandbox, taskId, file, offset } = request;
  const fail = (code: FileErrorCode, message: string): SandboxFileResult => ({ error: { code, message } });
  if (!(TASK_FILES as readonly string[]).includes(file)) return fail('INVALID', `unknown file "${file}"; only ${TASK_FILES.join(' and ')} can be read`);
  const relative = path.relative(path.resolve(sandboxesRoot), path.resolve(sandbox));
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
    return fail('INVALID', `the sandbox of task ${taskId} (${sandbox}) is not under the agent's sandboxes directory ${sandboxesRoot}; refusing to read it`);
  }
  const empty = (): SandboxFileResult => ({ data: Buffer.alloc(0), size: 0 });

  try {
    const dir = await lstat(sandbox);
    if (!dir.isDirectory()) return fail('INVALID', `the sandbox of task ${taskId} (${sandbox}) is not a directory; refusing to read it`);
  } catch (error) {
    if (isCode(error, 'ENOENT')) {
      return request.starting ? empty() : fail('NOT_FOUND', `the sandbox of task ${taskId} is gone (garbage-collected or never created)`);
    }
    return fail('FAILED', `cannot look at the sandbox of task ${taskId} (${sandbox}): ${(error as Error).message}`);
  }

  const filePath = path.join(sandbox, file);
  let handle;
  try {
    handle = await open(filePath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if (isCode(error, 'ENOENT')) {
      return request.starting ? empty() : fail('NOT_FOUND', `task ${taskId} has no ${file}: its sandbox holds no such file (the task may never have started)`);
    }
    if (isCode(error, 'ELOOP')) return fail('INVALID', `the ${file} of task ${taskId} is a symbolic link, not the file the agent wrote; refusing to follow it`);
    return fail('FAILED', `cannot open the ${file} of task ${taskId} (${filePath}): ${(error as Error).message}`);
  }
  try {
    const stats = await handle.stat();
    // O_NONBLOCK above keeps a FIFO planted by the task from blocking the open; this refuses it.
    if (!stats.isFile()) return fail('INVALID', `the ${file} of task ${taskId} is not a regular file; refusing to read it`);
    // Up to the size seen now, so `size` and the data agree even while a running task writes on.
    const want = Math.max(0, Math.min(request.length, MAX_FILE_DATA_BYTES, stats.size - offset));
    const buffer = Buffer.alloc(want);
    let filled = 0;
    while (filled < want) {
      const { bytesRead } = await handle.read(buffer, filled, want - filled, offset + filled);
      if (bytesRead === 0) break; // truncated meanwhile
      filled += bytesRead;
    }
    return { data: filled === want ? buffer : buffer.subarray(0, filled), size: stats.size };
  } catch (error) {
    return fail('FAILED', `cannot read the ${file} of task ${taskId} (${filePath}): ${(error as Error).message}`);
  } finally {
    await handle.close().catch(() => {});
  }
}

function isCode(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}
