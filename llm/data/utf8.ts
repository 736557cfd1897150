/** Decoding text files strictly: bad bytes are an error that says where they are. */

/** Byte offset of the first invalid UTF-8 sequence, or -1 when the bytes are valid. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let need: number, min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) need = 1, min = 0x80;
    else if (b >= 0xe0 && b <= 0xef) need = 2, min = 0x800;
    else if (b >= 0xf0 && b <= 0xf4) need = 3, min = 0x10000;
    else return i;
    if (i + need >= bytes.length) return i; // truncated sequence at the end
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

export function decodeUtf8Strict(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    const offset = firstInvalidUtf8(bytes);
    const shown = offset >= 0 ? `0x${bytes[offset].toString(16).padStart(2, "0")}` : "?";
    throw new Error(`${source}: not valid UTF-8: invalid byte ${shown} at byte offset ${offset}`);
  }
}
