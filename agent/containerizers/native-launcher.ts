/**
 * Builds the native task launcher (launcher.c) on demand: compiled once per version of its source,
 * with the machine's C compiler, into `<repo>/node_modules/.cache/agora/launcher-<hash>` where the
 * hash covers the source, the compiler flags and the platform. An agent finding it there uses it as it is; one
 * that does not compiles it (to a temp name, then renamed: agents and tests starting at once race
 * safely). No compiler, an unwritable cache or a compile error: the agent uses launcher.mjs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, constants, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** launcher.c next to this file. */
export const NATIVE_LAUNCHER_SOURCE = fileURLToPath(new URL('./launcher.c', import.meta.url));

/** `<repo>/node_modules/.cache/agora`. */
export const NATIVE_LAUNCHER_CACHE = fileURLToPath(new URL('../../node_modules/.cache/agora', import.meta.url));

/** Part of the hash: other flags make another binary. No -Werror here: a newer compiler's new warning must not cost the agent its launcher. */
const FLAGS = ['-std=c99', '-O2', '-Wall'];

/** Tried in this order. */
const COMPILERS = ['cc', 'gcc'];

const COMPILE_TIMEOUT_MS = 60_000;

export interface NativeLauncherOptions {
  /** @default launcher.c next to this file */
  source?: string;
  /** @default `<repo>/node_modules/.cache/agora` */
  cacheDir?: string;
  /** Compilers to try, by name (searched in PATH) or path. @default ['cc', 'gcc'] */
  compilers?: string[];
}

/** The compiled launcher's path, or why there is none. */
export type NativeLauncher = { path: string } | { unavailable: string };

/** One build per binary path at a time in this process (containerizers started together share it). */
const building = new Map<string, Promise<NativeLauncher>>();

/** The path of the launcher binary for the current source, compiling it first when needed. Never rejects. */
export async function nativeLauncher(options: NativeLauncherOptions = {}): Promise<NativeLauncher> {
  const source = options.source ?? NATIVE_LAUNCHER_SOURCE;
  const cacheDir = options.cacheDir ?? NATIVE_LAUNCHER_CACHE;
  let text: Buffer;
  try {
    text = await readFile(source);
  } catch (error) {
    return { unavailable: `cannot read ${source}: ${(error as Error).message}` };
  }
  const hash = createHash('sha256').update(text).update('\0').update(FLAGS.join(' ')).update(`\0${process.platform}-${process.arch}`).digest('hex').slice(0, 16);
  const binary = path.join(cacheDir, `launcher-${hash}`);
  let build = building.get(binary);
  if (!build) {
    build = findOrCompile(source, binary, options.compilers ?? COMPILERS).finally(() => building.delete(binary));
    building.set(binary, build);
  }
  return build;
}

async function findOrCompile(source: string, binary: string, compilers: string[]): Promise<NativeLauncher> {
  try {
    await access(binary, constants.X_OK);
    return { path: binary };
  } catch {
    // not built yet (for this source)
  }
  try {
    await mkdir(path.dirname(binary), { recursive: true });
  } catch (error) {
    return { unavailable: `cannot create ${path.dirname(binary)}: ${(error as Error).message}` };
  }
  const temp = `${binary}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`;
  const missing: string[] = [];
  for (const compiler of compilers) {
    const result = await run(compiler, [...FLAGS, '-o', temp, source]);
    if (result === 'not-found') {
      missing.push(compiler);
      continue;
    }
    if (result !== 'ok') {
      await rm(temp, { force: true }).catch(() => undefined);
      return { unavailable: `${compiler} could not compile ${source}: ${result}` };
    }
    try {
      // Atomic: whoever renames last wins, and both wrote the same program.
      await rename(temp, binary);
      await removeOlderBuilds(binary);
      return { path: binary };
    } catch (error) {
      await rm(temp, { force: true }).catch(() => undefined);
      return { unavailable: `cannot install ${binary}: ${(error as Error).message}` };
    }
  }
  return { unavailable: `no C compiler found (tried ${missing.join(', ')})` };
}

/**
 * Builds of earlier sources would pile up (one per change of launcher.c): they go once a new one is
 * in place. An agent still running one keeps it (its process holds the file); temp files of builds
 * in progress are left alone.
 */
async function removeOlderBuilds(binary: string): Promise<void> {
  const dir = path.dirname(binary);
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((name) => /^launcher-[0-9a-f]{16}$/.test(name) && name !== path.basename(binary)).map((name) => rm(path.join(dir, name), { force: true }).catch(() => undefined)));
}

/** 'ok', 'not-found' (no such compiler), or what went wrong (its stderr, shortened). */
function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: COMPILE_TIMEOUT_MS, maxBuffer: 1024 * 1024 }, (error, _stdout, stderr) => {
      if (!error) resolve('ok');
      else if ((error as NodeJS.ErrnoException).code === 'ENOENT') resolve('not-found');
      else {
        const detail = String(stderr).trim().split('\n').slice(0, 5).join('\n');
        resolve(detail || error.message);
      }
    });
  });
}
