/**
 * Token streams on disk: raw little-endian integers (uint16 when every id fits, else
 * uint32) with a small JSON header beside them.
 */

export interface TokenFileHeader {
  dtype: "uint16" | "uint32";
  count: number;
}

function encodeTokens(
  ids: ArrayLike<number>,
  vocabSize: number,
): { header: TokenFileHeader; bytes: Uint8Array } {
  const dtype = vocabSize <= 65536 ? "uint16" : "uint32";
  const array = dtype === "uint16" ? Uint16Array.from(ids) : Uint32Array.from(ids);
  const bytes = new Uint8Array(array.buffer);
  // Typed arrays use the platform's byte order; every platform Deno runs on is little-endian.
  return { header: { dtype, count: ids.length }, bytes };
}

function decodeTokens(
  bytes: Uint8Array,
  header: TokenFileHeader,
  source: string,
): Uint32Array {
  const width = header.dtype === "uint16" ? 2 : 4;
  if (bytes.length !== header.count * width) {
    throw new Error(
      `${source}: expected ${header.count} ${header.dtype} tokens (${
        header.count * width
      } bytes), found ${bytes.length} bytes`,
    );
  }
  const copy = bytes.slice().buffer;
  return Uint32Array.from(
    header.dtype === "uint16" ? new Uint16Array(copy) : new Uint32Array(copy),
  );
}

export async function writeTokenFile(
  path: string,
  ids: ArrayLike<number>,
  vocabSize: number,
): Promise<TokenFileHeader> {
  const { header, bytes } = encodeTokens(ids, vocabSize);
  await Deno.writeFile(path, bytes);
  await Deno.writeTextFile(`${path}.json`, JSON.stringify(header) + "\n");
  return header;
}

export async function readTokenFile(path: string): Promise<Uint32Array> {
  const header = JSON.parse(await Deno.readTextFile(`${path}.json`)) as TokenFileHeader;
  return decodeTokens(await Deno.readFile(path), header, path);
}
