/**
 * Files mapped into memory (POSIX mmap through Deno's FFI), so a weight file's tensors can be
 * Float32Array views of the file itself: loading copies nothing, and the operating system pages
 * the weights in from its page cache as the first forward pass reads them.
 *
 * The mapping is private and writable (copy-on-write): a tensor updated in place (training,
 * the optimizer's in-place step) changes this process's copy only, never the file. It is
 * unmapped when every ArrayBuffer made from it has been garbage-collected, so a view can never
 * outlive its memory.
 *
 * Where mapping is impossible (no FFI permission, no libc, Windows) `mapFile` returns undefined
 * and the caller reads the file as before.
 */

const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_PRIVATE = 0x02;
const O_RDONLY = 0;

const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let libc: Libc | null | undefined;

/** libc's open/mmap/munmap, or null where they cannot be reached. */
function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  const names: Record<string, string[]> = {
    linux: ["libc.so.6"],
    darwin: ["/usr/lib/libSystem.B.dylib"],
  };
  if (typeof Deno?.dlopen !== "function") return libc;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return libc;
  for (const name of names[Deno.build.os] ?? []) {
    try {
      libc = Deno.dlopen(name, LIBC_SYMBOLS).symbols;
      break;
    } catch { /* try the next name */ }
  }
  return libc;
}

/** A whole file mapped into memory. */
export interface MappedFile {
  /** The file's size in bytes. */
  readonly size: number;
  /**
   * `length` bytes at `offset` as an ArrayBuffer over the mapping (no copy). The mapping stays
   * until every buffer returned here is garbage.
   */
  bytes(offset: number, length: number): ArrayBuffer;
}

/** Unmaps a mapping once its last ArrayBuffer is gone. */
const unmapper = new FinalizationRegistry<{ release: () => void }>((held) => held.release());

/**
 * Maps `path` (read-only file, private copy-on-write pages), or returns undefined where mapping
 * is not available here (the caller then reads the file).
 */
export function mapFile(path: string, size: number): MappedFile | undefined {
  const c = loadLibc();
  if (!c || size === 0) return undefined;
  const fd = c.open(new TextEncoder().encode(path + "\0"), O_RDONLY);
  if (fd < 0) return undefined;
  let base: Deno.PointerValue;
  try {
    base = c.mmap(null, BigInt(size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0n);
  } finally {
    c.close(fd); // the mapping keeps the file's pages; the descriptor is not needed
  }
  // MAP_FAILED is (void*)-1.
  if (base === null || Deno.UnsafePointer.value(base) === 0xffffffffffffffffn) return undefined;
  let live = 0;
  const release = () => {
    if (--live === 0) c.munmap(base, BigInt(size));
  };
  // One reference for the MappedFile object itself, dropped when it is collected.
  const mapped: MappedFile = {
    size,
    bytes(offset: number, length: number): ArrayBuffer {
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new RangeError(`${path}: bytes ${offset}..${offset + length} outside its ${size}`);
      }
      if (length === 0) return new ArrayBuffer(0);
      const buffer = Deno.UnsafePointerView.getArrayBuffer(base!, length, offset);
      live++;
      unmapper.register(buffer, { release });
      return buffer;
    },
  };
  live++;
  unmapper.register(mapped, { release });
  return mapped;
}
