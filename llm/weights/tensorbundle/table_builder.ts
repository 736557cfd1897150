/**
 * Writes a LevelDB-style sorted table (the TensorBundle `.index` format; see table.ts for the
 * layout). Keys must be added in strictly increasing byte order. The table is built in memory:
 * TensorBundle indexes are kilobytes.
 */
import { crc32c, maskCrc } from "../crc32c.ts";
import { snappyCompress } from "../snappy.ts";
import { pushVarint } from "./protobuf.ts";
import {
  BLOCK_HANDLE_MAX_SIZE,
  type BlockCompression,
  type BlockHandle,
  compareBytes,
  COMPRESSION_NONE,
  COMPRESSION_SNAPPY,
  keyText,
  TABLE_MAGIC,
} from "./table.ts";

export interface TableBuilderOptions {
  /** Flush a data block once it reaches about this many bytes (TensorFlow: 256 KiB). */
  blockSize?: number;
  /** Store a full key every this many entries (TensorFlow/LevelDB: 16). */
  restartInterval?: number;
  /** TensorFlow writes "none" today; older releases wrote "snappy". */
  compression?: BlockCompression;
}

/** Accumulates the entries of one block with prefix-compressed keys. */
class BlockBuilder {
  private buffer: number[] = [];
  private restarts: number[] = [0];
  private sinceRestart = 0;
  private lastKey: Uint8Array = new Uint8Array(0);
  entryCount = 0;

  constructor(private readonly restartInterval: number) {}

  add(key: Uint8Array, value: Uint8Array): void {
    let shared = 0;
    if (this.sinceRestart < this.restartInterval) {
      const limit = Math.min(key.length, this.lastKey.length);
      while (shared < limit && key[shared] === this.lastKey[shared]) shared++;
    } else {
      this.restarts.push(this.buffer.length);
      this.sinceRestart = 0;
    }
    pushVarint(this.buffer, shared);
    pushVarint(this.buffer, key.length - shared);
    pushVarint(this.buffer, value.length);
    for (let i = shared; i < key.length; i++) this.buffer.push(key[i]);
    for (const byte of value) this.buffer.push(byte);
    this.lastKey = key;
    this.sinceRestart++;
    this.entryCount++;
  }

  /** Size the finished block would have. */
  estimatedSize(): number {
    return this.buffer.length + 4 * this.restarts.length + 4;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.estimatedSize());
    out.set(this.buffer);
    const view = new DataView(out.buffer);
    let pos = this.buffer.length;
    for (const restart of this.restarts) {
      view.setUint32(pos, restart, true);
      pos += 4;
    }
    view.setUint32(pos, this.restarts.length, true);
    return out;
  }
}

export class TableBuilder {
  private readonly blockSize: number;
  private readonly restartInterval: number;
  private readonly compression: BlockCompression;
  private readonly chunks: Uint8Array[] = [];
  private offset = 0;
  private dataBlock: BlockBuilder;
  private readonly indexBlock = new BlockBuilder(1); // LevelDB: every index key is a restart
  private lastKey: Uint8Array | undefined;
  /** Handle of the last flushed data block, waiting for the next key to pick its separator. */
  private pendingHandle: BlockHandle | undefined;
  private finished = false;

  constructor(options: TableBuilderOptions = {}) {
    this.blockSize = options.blockSize ?? 262144;
    this.restartInterval = options.restartInterval ?? 16;
    this.compression = options.compression ?? "none";
    this.dataBlock = new BlockBuilder(this.restartInterval);
  }

  add(key: Uint8Array | string, value: Uint8Array): void {
    if (this.finished) throw new Error("TableBuilder.add after finish");
    const keyBytes = typeof key === "string" ? new TextEncoder().encode(key) : key;
    if (this.lastKey && compareBytes(keyBytes, this.lastKey) <= 0) {
      throw new Error(
        `table keys must be strictly increasing: "${keyText(keyBytes)}" after ` +
          `"${keyText(this.lastKey)}"`,
      );
    }
    if (this.pendingHandle && this.lastKey) {
      this.indexBlock.add(
        shortestSeparator(this.lastKey, keyBytes),
        encodeHandle(this.pendingHandle),
      );
      this.pendingHandle = undefined;
    }
    this.dataBlock.add(keyBytes, value);
    this.lastKey = keyBytes;
    if (this.dataBlock.estimatedSize() >= this.blockSize) this.flushDataBlock();
  }

  /** Writes the remaining blocks and the footer; returns the whole table. */
  finish(): Uint8Array {
    if (this.finished) throw new Error("TableBuilder.finish called twice");
    this.flushDataBlock();
    this.finished = true;
    const metaindex = this.writeBlock(new BlockBuilder(this.restartInterval).finish());
    if (this.pendingHandle && this.lastKey) {
      this.indexBlock.add(shortSuccessor(this.lastKey), encodeHandle(this.pendingHandle));
      this.pendingHandle = undefined;
    }
    const index = this.writeBlock(this.indexBlock.finish());

    const footer = new Uint8Array(48);
    const handles = [...encodeHandle(metaindex), ...encodeHandle(index)];
    if (handles.length > 2 * BLOCK_HANDLE_MAX_SIZE) throw new Error("block handles too large");
    footer.set(handles);
    new DataView(footer.buffer).setBigUint64(40, TABLE_MAGIC, true);
    this.append(footer);

    const out = new Uint8Array(this.offset);
    let pos = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, pos);
      pos += chunk.length;
    }
    return out;
  }

  private flushDataBlock(): void {
    if (this.dataBlock.entryCount === 0) return;
    this.pendingHandle = this.writeBlock(this.dataBlock.finish());
    this.dataBlock = new BlockBuilder(this.restartInterval);
  }

  /** Appends block + trailer; compresses only when it saves at least 1/8 (as LevelDB does). */
  private writeBlock(raw: Uint8Array): BlockHandle {
    let contents = raw;
    let type = COMPRESSION_NONE;
    if (this.compression === "snappy") {
      const compressed = snappyCompress(raw);
      if (compressed.length < raw.length - raw.length / 8) {
        contents = compressed;
        type = COMPRESSION_SNAPPY;
      }
    }
    const handle = { offset: this.offset, size: contents.length };
    const trailer = new Uint8Array(5);
    trailer[0] = type;
    const crc = crc32c(trailer.subarray(0, 1), crc32c(contents));
    new DataView(trailer.buffer).setUint32(1, maskCrc(crc), true);
    this.append(contents);
    this.append(trailer);
    return handle;
  }

  private append(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.offset += bytes.length;
  }
}

function encodeHandle(handle: BlockHandle): Uint8Array {
  const out: number[] = [];
  pushVarint(out, handle.offset);
  pushVarint(out, handle.size);
  return Uint8Array.from(out);
}

/**
 * A short key k with start <= k < limit (LevelDB's BytewiseComparator::FindShortestSeparator):
 * keeps the index block small. Falls back to `start` itself.
 */
function shortestSeparator(start: Uint8Array, limit: Uint8Array): Uint8Array {
  const n = Math.min(start.length, limit.length);
  let diff = 0;
  while (diff < n && start[diff] === limit[diff]) diff++;
  if (diff < n && start[diff] < 0xff && start[diff] + 1 < limit[diff]) {
    const out = start.slice(0, diff + 1);
    out[diff]++;
    return out;
  }
  return start;
}

/** A short key k >= key (FindShortSuccessor): bump the first byte that is not 0xff. */
function shortSuccessor(key: Uint8Array): Uint8Array {
  for (let i = 0; i < key.length; i++) {
    if (key[i] !== 0xff) {
      const out = key.slice(0, i + 1);
      out[i]++;
      return out;
    }
  }
  return key;
}
