/**
 * One cache, many processes: a stage key is computed by one process at a time. The lock is a
 * file created atomically (`createNew`) holding the owner's pid, host and start time; it
 * covers the key's temporary output folder and its progress folder (checkpoints), so no other
 * process sweeps the one or resumes from the other while the owner lives.
 *
 * A lock whose owner is dead (same host, pid gone) is reclaimed; a lock of another host is
 * never broken (we cannot tell whether its owner lives).
 */
import { sleep } from "../util/timers.ts";
import { hostname } from "node:os";

/** Who holds a lock, as written in the lock file: enough to tell a dead owner from a live one. */
export interface LockOwner {
  /** Process id of the owner (checked for liveness only on the same host). */
  pid: number;
  /** Host name of the owner; a lock from another host is never broken. */
  host: string;
  /** ISO time the owner took the lock. */
  started: string;
}

/** A lock this process holds: release it when the key's work is done or abandoned. */
export interface HeldLock {
  /** The lock file. */
  path: string;
  /** Remove the lock file (only if it is still ours). */
  release(): Promise<void>;
}

const thisHost = hostname();

/** Whether a process with this pid exists on this machine. */
export function pidAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  if (Deno.build.os === "linux") {
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch {
      return false;
    }
  }
  try {
    // Signal 0 is not available in Deno; SIGCONT is harmless to a running process.
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound) &&
      !String(error).includes("No such process");
  }
}

/** Whether the owner is known to be gone: same host and its pid is not running. */
export function ownerDead(owner: LockOwner): boolean {
  return owner.host === thisHost && !pidAlive(owner.pid);
}

async function readOwner(path: string): Promise<LockOwner | "missing" | "unreadable"> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw error;
  }
  try {
    const owner = JSON.parse(text) as LockOwner;
    if (typeof owner.pid === "number" && typeof owner.host === "string") return owner;
  } catch { /* being written, or garbage */ }
  return "unreadable";
}

/** How long a lock file may stay empty or unreadable (its owner is writing it) before it is stale. */
const UNREADABLE_GRACE_MS = 10_000;

/**
 * Take the lock at `path` if nobody holds it (reclaiming a dead owner's); otherwise return
 * the live owner.
 */
export async function tryLock(path: string): Promise<HeldLock | LockOwner> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const file = await Deno.open(path, { write: true, createNew: true });
      const owner: LockOwner = { pid: Deno.pid, host: thisHost, started: new Date().toISOString() };
      try {
        await file.write(new TextEncoder().encode(JSON.stringify(owner) + "\n"));
      } finally {
        file.close();
      }
      let released = false;
      return {
        path,
        release: async () => {
          if (released) return;
          released = true;
          await Deno.remove(path).catch(() => {});
        },
      };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const owner = await readOwner(path);
    if (owner === "missing") continue; // released between our two calls: try again
    if (owner === "unreadable") {
      const age = Date.now() - ((await Deno.stat(path).catch(() => undefined))?.mtime?.getTime() ??
        0);
      if (age < UNREADABLE_GRACE_MS) {
        return { pid: 0, host: "?", started: new Date().toISOString() };
      }
    } else if (!ownerDead(owner)) {
      return owner;
    }
    // A dead owner's lock (or garbage): remove it and try again. Two reclaimers can race
    // here; createNew lets only one of them win.
    await Deno.remove(path).catch(() => {});
  }
  throw new Error(`${path}: could not take the lock (it keeps changing hands)`);
}

export function isHeld(lock: HeldLock | LockOwner): lock is HeldLock {
  return "release" in lock;
}

/** `pid 1234, started 12:03` (the host too when it is another machine). */
export function describeOwner(owner: LockOwner): string {
  const time = new Date(owner.started);
  const hhmm = Number.isNaN(time.getTime())
    ? owner.started
    : `${String(time.getHours()).padStart(2, "0")}:${String(time.getMinutes()).padStart(2, "0")}`;
  const host = owner.host === thisHost ? "" : ` on ${owner.host}`;
  return `pid ${owner.pid}${host}, started ${hhmm}`;
}

/**
 * Take the lock, waiting while a live process holds it. `onWait` is called once, with the
 * owner, when waiting starts; `noWait` makes a held lock an immediate error instead.
 */
export async function acquireLock(
  path: string,
  options: {
    what: string;
    noWait?: boolean;
    signal?: AbortSignal;
    pollMs?: number;
    onWait?: (owner: LockOwner) => void;
  },
): Promise<HeldLock> {
  let announced = false;
  while (true) {
    options.signal?.throwIfAborted();
    const lock = await tryLock(path);
    if (isHeld(lock)) return lock;
    if (options.noWait) {
      throw new LockBusyError(
        `${options.what} is being computed by another run (${
          describeOwner(lock)
        }); --no-wait was given, so this run stops instead of waiting`,
      );
    }
    if (!announced) {
      options.onWait?.(lock);
      announced = true;
    }
    await sleep(options.pollMs ?? 500, options.signal);
  }
}

export class LockBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LockBusyError";
  }
}
