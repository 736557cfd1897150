/**
 * Raw Snappy block format (google/snappy `format_description.txt`), no framing.
 *
 * A block is the uncompressed length as a varint, then a sequence of elements, each starting
 * with a tag byte whose low two bits say what follows:
 *   00 literal: length-1 in the upper 6 bits, or (60..63) → 1..4 extra little-endian length bytes
 *   01 copy, 1-byte offset: length 4..11 in bits 2-4, offset = bits 5-7 (high) + next byte
 *   10 copy, 2-byte offset: length 1..64 in the upper 6 bits, offset = next 2 bytes (LE)
 *   11 copy, 4-byte offset: length 1..64 in the upper 6 bits, offset = next 4 bytes (LE)
 * A copy repeats `length` bytes starting `offset` bytes back in the output; the ranges may
 * overlap (offset < length), which is how runs are encoded.
 *
 * Old TensorFlow releases wrote Snappy-compressed `.index` blocks, so the reader needs this.
 */
import { SnappyError } from "./errors.ts";

/** Reads the varint32 length prefix of a Snappy block. */
function snappyUncompressedLength(
  src: Uint8Array,
  source = "snappy block",
): { length: number; headerBytes: number } {
  let length = 0;
  for (let i = 0; i < 5; i++) {
    if (i >= src.length) {
      throw new SnappyError(`${source}: truncated Snappy length varint at byte ${i}`);
    }
    const byte = src[i];
    length += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (length > 0xffffffff) {
        throw new SnappyError(`${source}: Snappy length ${length} exceeds 32 bits`);
      }
      return { length, headerBytes: i + 1 };
    }
  }
  throw new SnappyError(`${source}: Snappy length varint longer than 5 bytes`);
}

/**
 * Decompresses one raw Snappy block. Every read and copy is bounds-checked; malformed input
 * raises an error naming `source`, the input offset and what was wrong.
 */
export function snappyDecompress(src: Uint8Array, source = "snappy block"): Uint8Array {
  const { length, headerBytes } = snappyUncompressedLength(src, source);
  const out = new Uint8Array(length);
  let ip = headerBytes; // input position
  let op = 0; // output position

  const need = (count: number, tagAt: number) => {
    if (ip + count > src.length) {
      throw new SnappyError(
        `${source}: truncated Snappy element at input offset ${tagAt}: needs ${count} more ` +
          `byte(s), only ${src.length - ip} left`,
      );
    }
  };

  while (ip < src.length) {
    const tagAt = ip;
    const tag = src[ip++];
    const kind = tag & 3;
    if (kind === 0) {
      let literalLength = tag >>> 2;
      if (literalLength >= 60) {
        const extraBytes = literalLength - 59;
        need(extraBytes, tagAt);
        literalLength = 0;
        for (let k = 0; k < extraBytes; k++) literalLength += src[ip + k] * 2 ** (8 * k);
        ip += extraBytes;
      }
      literalLength += 1;
      need(literalLength, tagAt);
      if (op + literalLength > length) {
        throw new SnappyError(
          `${source}: Snappy literal at input offset ${tagAt} writes past the declared ` +
            `uncompressed length ${length}`,
        );
      }
      out.set(src.subarray(ip, ip + literalLength), op);
      ip += literalLength;
      op += literalLength;
      continue;
    }

    let copyLength: number;
    let offset: number;
    if (kind === 1) {
      need(1, tagAt);
      copyLength = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | src[ip++];
    } else if (kind === 2) {
      need(2, tagAt);
      copyLength = (tag >>> 2) + 1;
      offset = src[ip] | (src[ip + 1] << 8);
      ip += 2;
    } else {
      need(4, tagAt);
      copyLength = (tag >>> 2) + 1;
      offset = (src[ip] | (src[ip + 1] << 8) | (src[ip + 2] << 16) | (src[ip + 3] << 24)) >>> 0;
      ip += 4;
    }
    if (offset === 0 || offset > op) {
      throw new SnappyError(
        `${source}: Snappy copy at input offset ${tagAt} has offset ${offset}, but only ${op} ` +
          `byte(s) were produced so far`,
      );
    }
    if (op + copyLength > length) {
      throw new SnappyError(
        `${source}: Snappy copy at input offset ${tagAt} writes past the declared uncompressed ` +
          `length ${length}`,
      );
    }
    if (offset >= copyLength) {
      out.copyWithin(op, op - offset, op - offset + copyLength);
      op += copyLength;
    } else {
      // Overlapping copy: bytes produced by this copy feed later bytes of it.
      for (let k = 0; k < copyLength; k++, op++) out[op] = out[op - offset];
    }
  }
  if (op !== length) {
    throw new SnappyError(
      `${source}: Snappy block produced ${op} byte(s) but declares ${length} (truncated input?)`,
    );
  }
  return out;
}

/** Largest run a single copy element may describe. */
const MAX_COPY_LENGTH = 64;
const HASH_BITS = 14;

/**
 * A simple greedy Snappy compressor (hash of 4-byte sequences → last position seen). It
 * emits valid raw Snappy that any decoder reads; it is not tuned for ratio or speed. Used by
 * the TensorBundle writer's optional compressed index blocks and by tests.
 */
export function snappyCompress(input: Uint8Array): Uint8Array {
  const out: number[] = [];
  let length = input.length;
  do {
    const byte = length & 0x7f;
    length = Math.floor(length / 128);
    out.push(length > 0 ? byte | 0x80 : byte);
  } while (length > 0);

  const table = new Int32Array(1 << HASH_BITS).fill(-1);
  const hashAt = (i: number) => {
    const word = input[i] | (input[i + 1] << 8) | (input[i + 2] << 16) | (input[i + 3] << 24);
    return Math.imul(word, 0x1e35a7bd) >>> (32 - HASH_BITS);
  };

  let literalStart = 0;
  let i = 0;
  while (i + 4 <= input.length) {
    const h = hashAt(i);
    const candidate = table[h];
    table[h] = i;
    const offset = i - candidate;
    if (
      candidate >= 0 && offset <= 0xffff && input[candidate] === input[i] &&
      input[candidate + 1] === input[i + 1] && input[candidate + 2] === input[i + 2] &&
      input[candidate + 3] === input[i + 3]
    ) {
      emitLiteral(out, input, literalStart, i);
      let matchLength = 4;
      while (
        i + matchLength < input.length && input[candidate + matchLength] === input[i + matchLength]
      ) {
        matchLength++;
      }
      emitCopies(out, offset, matchLength);
      i += matchLength;
      literalStart = i;
    } else {
      i++;
    }
  }
  emitLiteral(out, input, literalStart, input.length);
  return Uint8Array.from(out);
}

function emitLiteral(out: number[], input: Uint8Array, start: number, end: number): void {
  if (end <= start) return;
  const n = end - start - 1; // stored as length - 1
  if (n < 60) {
    out.push(n << 2);
  } else {
    const extra: number[] = [];
    for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) extra.push(rest & 0xff);
    out.push((59 + extra.length) << 2, ...extra);
  }
  for (let k = start; k < end; k++) out.push(input[k]);
}

function emitCopies(out: number[], offset: number, length: number): void {
  while (length > 0) {
    // Copy-2 elements take any length 1..64; the shorter copy-1 form needs 4..11 and a
    // small offset.
    const piece = Math.min(length, MAX_COPY_LENGTH);
    if (piece >= 4 && piece <= 11 && offset < 2048) {
      out.push(1 | ((piece - 4) << 2) | ((offset >>> 8) << 5), offset & 0xff);
    } else {
      out.push(2 | ((piece - 1) << 2), offset & 0xff, offset >>> 8);
    }
    length -= piece;
  }
}
