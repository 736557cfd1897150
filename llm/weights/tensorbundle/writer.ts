/**
 * TensorBundle writer: produces `<prefix>.index` + `<prefix>.data-00000-of-00001` that
 * TensorFlow (and our reader) can load. Tensors are appended to the data file as they are
 * added (so a large checkpoint streams to disk one tensor at a time); the index is written at
 * the end with entries sorted by name, like TensorFlow's BundleWriter.
 *
 * Both files are written under temporary names and renamed into place when complete, data
 * first and index last, so a crash never leaves an index that points at missing data.
 */
import { TensorBundleError } from "../errors.ts";
import { dirname } from "node:path";
import { randomUUID } from "node:crypto";
import { crc32c, maskCrc } from "../crc32c.ts";
import { encodeBundleEntry, encodeBundleHeader } from "./bundle_proto.ts";
import { type NumericArray, TF_DTYPE_NUMBERS } from "./dtypes.ts";
import { lengthBytesForChecksum, numElements, shardFileName } from "./reader.ts";
import { compareBytes } from "./table.ts";
import { TableBuilder, type TableBuilderOptions } from "./table_builder.ts";

/**
 * A tensor to write. The dtype defaults from the array type (Float32Array → DT_FLOAT, …);
 * give it to store a Uint8Array as DT_BOOL or a Uint16Array's bits as DT_HALF/DT_BFLOAT16.
 */
export type WritableTensor =
  | { shape: number[]; data: NumericArray; dtype?: string }
  | { shape: number[]; strings: Array<Uint8Array | string> };

export interface TensorBundleWriterOptions {
  /** Index table layout; tests use small blocks or Snappy to exercise the reader. */
  index?: TableBuilderOptions;
}

const DEFAULT_DTYPES: Array<[new (...args: never[]) => NumericArray, string]> = [
  [Float32Array, "DT_FLOAT"],
  [Float64Array, "DT_DOUBLE"],
  [Int8Array, "DT_INT8"],
  [Int16Array, "DT_INT16"],
  [Int32Array, "DT_INT32"],
  [Uint8Array, "DT_UINT8"],
  [Uint16Array, "DT_UINT16"],
  [Uint32Array, "DT_UINT32"],
  [BigInt64Array, "DT_INT64"],
  [BigUint64Array, "DT_UINT64"],
];

/** Which stored dtypes each array type may carry (same element width, raw bits). */
const COMPATIBLE: Record<string, string[]> = {
  DT_UINT8: ["DT_UINT8", "DT_BOOL"],
  DT_UINT16: ["DT_UINT16", "DT_HALF", "DT_BFLOAT16"],
};

interface PendingEntry {
  dtype: number;
  shape: number[];
  offset: number;
  size: number;
  crc32cMasked: number;
}

export class TensorBundleWriter {
  private readonly entries = new Map<string, PendingEntry>();
  private size = 0;
  private closed = false;

  private constructor(
    readonly prefix: string,
    private readonly file: Deno.FsFile,
    private readonly dataTempPath: string,
    private readonly options: TensorBundleWriterOptions,
  ) {}

  /** Creates the parent folder if needed and opens the temporary data file. */
  static async create(
    prefix: string,
    options: TensorBundleWriterOptions = {},
  ): Promise<TensorBundleWriter> {
    await Deno.mkdir(dirname(prefix), { recursive: true });
    const dataTempPath = `${shardFileName(prefix, 0, 1)}.tmp-${randomUUID()}`;
    const file = await Deno.open(dataTempPath, { write: true, createNew: true });
    return new TensorBundleWriter(prefix, file, dataTempPath, options);
  }

  get dataPath(): string {
    return shardFileName(this.prefix, 0, 1);
  }

  get indexPath(): string {
    return `${this.prefix}.index`;
  }

  /** Appends one tensor's bytes to the data file and records its index entry. */
  async add(name: string, tensor: WritableTensor): Promise<void> {
    if (this.closed) {
      throw new TensorBundleError(`${this.indexPath}: add("${name}") after finish/abort`);
    }
    if (name === "") {
      throw new TensorBundleError(`${this.indexPath}: the empty name is reserved for the header`);
    }
    if (this.entries.has(name)) {
      throw new TensorBundleError(`${this.indexPath}: duplicate tensor "${name}"`);
    }
    for (const [axis, dim] of tensor.shape.entries()) {
      if (!Number.isSafeInteger(dim) || dim < 0) {
        throw new TensorBundleError(
          `${this.indexPath}: tensor "${name}" has bad size ${dim} on axis ${axis}`,
        );
      }
    }
    const count = numElements(tensor.shape);

    let dtypeName: string;
    let crc: number;
    let written: number;
    if ("strings" in tensor) {
      if (tensor.strings.length !== count) {
        throw new TensorBundleError(
          `${this.indexPath}: tensor "${name}" has ${tensor.strings.length} strings but shape ` +
            `[${tensor.shape}] needs ${count}`,
        );
      }
      dtypeName = "DT_STRING";
      ({ crc, written } = await this.writeStrings(tensor.strings));
    } else {
      dtypeName = resolveDtype(name, tensor.data, tensor.dtype, this.indexPath);
      if (tensor.data.length !== count) {
        throw new TensorBundleError(
          `${this.indexPath}: tensor "${name}" has ${tensor.data.length} values but shape ` +
            `[${tensor.shape}] needs ${count}`,
        );
      }
      const bytes = new Uint8Array(
        tensor.data.buffer,
        tensor.data.byteOffset,
        tensor.data.byteLength,
      );
      await this.write(bytes);
      crc = crc32c(bytes);
      written = bytes.length;
    }
    this.entries.set(name, {
      dtype: TF_DTYPE_NUMBERS[dtypeName],
      shape: [...tensor.shape],
      offset: this.size,
      size: written,
      crc32cMasked: maskCrc(crc),
    });
    this.size += written;
  }

  /** Writes the index and renames both files into place. */
  async finish(): Promise<void> {
    if (this.closed) throw new TensorBundleError(`${this.indexPath}: finish called twice`);
    this.closed = true;
    const indexTempPath = `${this.indexPath}.tmp-${randomUUID()}`;
    try {
      this.file.close();
      const table = new TableBuilder(this.options.index);
      table.add(
        "",
        encodeBundleHeader({
          numShards: 1,
          endianness: "little",
          version: { producer: 1, minConsumer: 0, badConsumers: [] },
        }),
      );
      // Table order is bytewise over UTF-8, not JavaScript's UTF-16 string order.
      const encoder = new TextEncoder();
      const names = [...this.entries.keys()].sort((a, b) =>
        compareBytes(encoder.encode(a), encoder.encode(b))
      );
      for (const name of names) {
        table.add(name, encodeBundleEntry({ ...this.entries.get(name)!, shardId: 0 }));
      }
      await Deno.writeFile(indexTempPath, table.finish());
      await Deno.rename(this.dataTempPath, this.dataPath);
      await Deno.rename(indexTempPath, this.indexPath);
    } catch (error) {
      await Deno.remove(indexTempPath).catch(() => {});
      await Deno.remove(this.dataTempPath).catch(() => {});
      throw error;
    }
  }

  /** Closes and deletes the temporary data file; nothing is left behind. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      this.file.close();
    } catch { /* already closed */ }
    await Deno.remove(this.dataTempPath).catch(() => {});
  }

  /** String layout and checksum as in the reader's decodeStringTensor. */
  private async writeStrings(
    strings: Array<Uint8Array | string>,
  ): Promise<{ crc: number; written: number }> {
    const encoder = new TextEncoder();
    const elements = strings.map((s) => typeof s === "string" ? encoder.encode(s) : s);
    const lengths: number[] = [];
    let crc = 0;
    for (const element of elements) {
      let length = element.length;
      do {
        const byte = length & 0x7f;
        length = Math.floor(length / 128);
        lengths.push(length > 0 ? byte | 0x80 : byte);
      } while (length > 0);
      crc = crc32c(lengthBytesForChecksum(element.length), crc);
    }
    const checksum = new Uint8Array(4);
    new DataView(checksum.buffer).setUint32(0, maskCrc(crc), true);
    crc = crc32c(checksum, crc);
    await this.write(Uint8Array.from(lengths));
    await this.write(checksum);
    let written = lengths.length + 4;
    for (const element of elements) {
      crc = crc32c(element, crc);
      await this.write(element);
      written += element.length;
    }
    return { crc, written };
  }

  private async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += await this.file.write(bytes.subarray(done));
  }
}

/**
 * Writes a whole checkpoint from (name, tensor) pairs, e.g. a Map or an async generator that
 * produces tensors one by one. Returns the paths written.
 */
export async function writeTensorBundle(
  prefix: string,
  tensors: Iterable<[string, WritableTensor]> | AsyncIterable<[string, WritableTensor]>,
  options: TensorBundleWriterOptions = {},
): Promise<{ indexPath: string; dataPath: string }> {
  const writer = await TensorBundleWriter.create(prefix, options);
  try {
    for await (const [name, tensor] of tensors) await writer.add(name, tensor);
    await writer.finish();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  return { indexPath: writer.indexPath, dataPath: writer.dataPath };
}

function resolveDtype(
  name: string,
  data: NumericArray,
  requested: string | undefined,
  indexPath: string,
): string {
  const natural = DEFAULT_DTYPES.find(([type]) => data instanceof type)?.[1];
  if (!natural) {
    throw new TensorBundleError(`${indexPath}: tensor "${name}" has an unsupported array type`);
  }
  if (requested === undefined || requested === natural) return natural;
  if (COMPATIBLE[natural]?.includes(requested)) return requested;
  throw new TensorBundleError(
    `${indexPath}: tensor "${name}" is a ${data.constructor.name}, which cannot be stored as ` +
      `${requested}`,
  );
}
