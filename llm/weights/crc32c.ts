/**
 * CRC32C (Castagnoli polynomial), the checksum LevelDB tables and TensorFlow checkpoints use.
 *
 * Table-driven "slicing-by-8": eight 256-entry tables let the inner loop consume 8 bytes per
 * step with independent table lookups, which is several times faster than the classic
 * byte-at-a-time loop. Large checkpoint tensors (hundreds of MB) are checksummed on load, so
 * this matters.
 */

/** The Castagnoli polynomial 0x1EDC6F41 in reflected (LSB-first) form. */
const POLY_REFLECTED = 0x82f63b78;

/** TABLES[k][b] = CRC contribution of byte b followed by k zero bytes. */
const TABLES: Uint32Array[] = buildTables();

function buildTables(): Uint32Array[] {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc & 1) ? (crc >>> 1) ^ POLY_REFLECTED : crc >>> 1;
    tables[0][byte] = crc >>> 0;
  }
  for (let byte = 0; byte < 256; byte++) {
    for (let k = 1; k < 8; k++) {
      const prev = tables[k - 1][byte];
      tables[k][byte] = (tables[0][prev & 0xff] ^ (prev >>> 8)) >>> 0;
    }
  }
  return tables;
}

/**
 * CRC32C of `data`, continuing from `crc` (the CRC of the bytes before it; 0 to start).
 * `crc32c(b, crc32c(a))` equals the CRC of `a` followed by `b` (LevelDB's `crc32c::Extend`).
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  const end8 = n - (n % 8);
  while (i < end8) {
    // Fold the next 4 bytes into the running CRC, then look up all 8 bytes at once.
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c = t7[lo & 0xff] ^ t6[(lo >>> 8) & 0xff] ^ t5[(lo >>> 16) & 0xff] ^ t4[lo >>> 24] ^
      t3[data[i + 4]] ^ t2[data[i + 5]] ^ t1[data[i + 6]] ^ t0[data[i + 7]];
    i += 8;
  }
  while (i < n) c = t0[(c ^ data[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The constant LevelDB/TensorFlow add when masking. Masking exists because computing the CRC of
 * a string that itself contains embedded CRCs is problematic; stored CRCs are always masked.
 */
const MASK_DELTA = 0xa282ead8;

/** Rotate right by 15 bits and add a constant (LevelDB's `crc32c::Mask`). */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

/** Inverse of {@link maskCrc}. */
export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
