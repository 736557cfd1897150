/** Test helper: tar archives built in memory. */

export /** A ustar archive of `files` (path → bytes), written the way tar(1) writes one. */
function buildTar(files: [string, Uint8Array][]): Uint8Array {
  const blocks: Uint8Array[] = [];
  const encoder = new TextEncoder();
  for (const [path, data] of files) {
    const header = new Uint8Array(512);
    const put = (offset: number, text: string) => header.set(encoder.encode(text), offset);
    // Over 100 characters: split at the first "/" that leaves at most 100 for the name.
    const slash = path.length > 100 ? path.indexOf("/", path.length - 101) : -1;
    put(0, slash >= 0 ? path.slice(slash + 1) : path);
    if (slash >= 0) put(345, path.slice(0, slash));
    put(100, "0000644\0");
    put(108, "0001750\0");
    put(116, "0001750\0");
    put(124, data.length.toString(8).padStart(11, "0") + "\0");
    put(136, "14700000000\0");
    header[156] = 48; // "0": a regular file
    put(257, "ustar\0");
    put(263, "00");
    header.fill(32, 148, 156);
    const sum = header.reduce((a, b) => a + b, 0);
    put(148, sum.toString(8).padStart(6, "0") + "\0 ");
    blocks.push(header, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let offset = 0;
  for (const block of blocks) out.set(block, offset), offset += block.length;
  return out;
}
