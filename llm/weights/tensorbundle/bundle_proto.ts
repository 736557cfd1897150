/**
 * The two protobuf messages stored as values in a TensorBundle index
 * (tensorflow/core/protobuf/tensor_bundle.proto):
 *
 *   BundleHeaderProto (key ""):  1 num_shards int32, 2 endianness enum (0 LITTLE, 1 BIG),
 *                                3 version VersionDef {1 producer, 2 min_consumer,
 *                                  3 bad_consumers repeated}
 *   BundleEntryProto (per tensor): 1 dtype enum, 2 shape TensorShapeProto, 3 shard_id int32,
 *                                4 offset int64, 5 size int64, 6 crc32c fixed32 (masked),
 *                                7 slices repeated TensorSliceProto
 *   TensorShapeProto: 2 dim repeated {1 size int64, 2 name string}, 3 unknown_rank bool
 *
 * proto3 omits fields equal to their default (0), so absent means 0.
 */
import { TensorBundleError } from "../errors.ts";
import {
  ProtoReader,
  ProtoWriter,
  WIRE_FIXED32,
  WIRE_LENGTH_DELIMITED,
  WIRE_VARINT,
} from "./protobuf.ts";

export interface BundleHeader {
  numShards: number;
  endianness: "little" | "big";
  version: { producer: number; minConsumer: number; badConsumers: number[] };
}

/** One BundleEntryProto, fields as stored (dtype as its enum number, crc32c still masked). */
export interface RawBundleEntry {
  dtype: number;
  shape: number[];
  shardId: number;
  offset: number;
  size: number;
  crc32cMasked: number;
  /** Number of TensorSliceProto records: nonzero for partitioned variables. */
  sliceCount: number;
}

export function decodeBundleHeader(bytes: Uint8Array, where: string): BundleHeader {
  const reader = new ProtoReader(bytes, where);
  const header: BundleHeader = {
    numShards: 0,
    endianness: "little",
    version: { producer: 0, minConsumer: 0, badConsumers: [] },
  };
  while (!reader.done) {
    const { field, wireType } = reader.readTag();
    if (field === 1) {
      reader.expectWireType(field, wireType, WIRE_VARINT, "num_shards");
      header.numShards = reader.readVarint();
    } else if (field === 2) {
      reader.expectWireType(field, wireType, WIRE_VARINT, "endianness");
      const value = reader.readVarint();
      if (value !== 0 && value !== 1) {
        throw new TensorBundleError(
          `${where}: unknown endianness ${value} (expected 0 LITTLE or 1 BIG)`,
        );
      }
      header.endianness = value === 0 ? "little" : "big";
    } else if (field === 3) {
      reader.expectWireType(field, wireType, WIRE_LENGTH_DELIMITED, "version");
      header.version = decodeVersionDef(reader.readBytes(), `${where}: version`);
    } else {
      reader.skip(wireType, field);
    }
  }
  return header;
}

function decodeVersionDef(bytes: Uint8Array, where: string): BundleHeader["version"] {
  const reader = new ProtoReader(bytes, where);
  const version = { producer: 0, minConsumer: 0, badConsumers: [] as number[] };
  while (!reader.done) {
    const { field, wireType } = reader.readTag();
    if (field === 1 && wireType === WIRE_VARINT) version.producer = reader.readVarint();
    else if (field === 2 && wireType === WIRE_VARINT) version.minConsumer = reader.readVarint();
    else if (field === 3 && wireType === WIRE_VARINT) {
      version.badConsumers.push(reader.readVarint());
    } else if (field === 3 && wireType === WIRE_LENGTH_DELIMITED) {
      // Packed repeated int32.
      const packed = new ProtoReader(reader.readBytes(), `${where}: bad_consumers`);
      while (!packed.done) version.badConsumers.push(packed.readVarint());
    } else reader.skip(wireType, field);
  }
  return version;
}

export function decodeBundleEntry(bytes: Uint8Array, where: string): RawBundleEntry {
  const reader = new ProtoReader(bytes, where);
  const entry: RawBundleEntry = {
    dtype: 0,
    shape: [],
    shardId: 0,
    offset: 0,
    size: 0,
    crc32cMasked: 0,
    sliceCount: 0,
  };
  while (!reader.done) {
    const { field, wireType } = reader.readTag();
    switch (field) {
      case 1:
        reader.expectWireType(field, wireType, WIRE_VARINT, "dtype");
        entry.dtype = reader.readVarint();
        break;
      case 2:
        reader.expectWireType(field, wireType, WIRE_LENGTH_DELIMITED, "shape");
        entry.shape = decodeTensorShape(reader.readBytes(), `${where}: shape`);
        break;
      case 3:
        reader.expectWireType(field, wireType, WIRE_VARINT, "shard_id");
        entry.shardId = reader.readVarint();
        break;
      case 4:
        reader.expectWireType(field, wireType, WIRE_VARINT, "offset");
        entry.offset = reader.readVarint();
        break;
      case 5:
        reader.expectWireType(field, wireType, WIRE_VARINT, "size");
        entry.size = reader.readVarint();
        break;
      case 6:
        reader.expectWireType(field, wireType, WIRE_FIXED32, "crc32c");
        entry.crc32cMasked = reader.readFixed32();
        break;
      case 7:
        reader.expectWireType(field, wireType, WIRE_LENGTH_DELIMITED, "slices");
        reader.readBytes();
        entry.sliceCount++;
        break;
      default:
        reader.skip(wireType, field);
    }
  }
  for (const [name, value] of [["offset", entry.offset], ["size", entry.size]] as const) {
    if (value < 0) throw new TensorBundleError(`${where}: negative ${name} ${value}`);
  }
  return entry;
}

function decodeTensorShape(bytes: Uint8Array, where: string): number[] {
  const reader = new ProtoReader(bytes, where);
  const dims: number[] = [];
  while (!reader.done) {
    const { field, wireType } = reader.readTag();
    if (field === 2) {
      reader.expectWireType(field, wireType, WIRE_LENGTH_DELIMITED, "dim");
      dims.push(decodeDimSize(reader.readBytes(), `${where}: dim ${dims.length}`));
    } else if (field === 3) {
      reader.expectWireType(field, wireType, WIRE_VARINT, "unknown_rank");
      if (reader.readVarint() !== 0) {
        throw new TensorBundleError(`${where}: shape has unknown rank`);
      }
    } else {
      reader.skip(wireType, field);
    }
  }
  return dims;
}

function decodeDimSize(bytes: Uint8Array, where: string): number {
  const reader = new ProtoReader(bytes, where);
  let size = 0;
  while (!reader.done) {
    const { field, wireType } = reader.readTag();
    if (field === 1) {
      reader.expectWireType(field, wireType, WIRE_VARINT, "size");
      size = reader.readVarint();
    } else {
      reader.skip(wireType, field);
    }
  }
  if (size < 0) {
    throw new TensorBundleError(`${where}: dimension size ${size} is unknown (negative)`);
  }
  return size;
}

/** Serializes a header the way TensorFlow's BundleWriter does (defaults omitted). */
export function encodeBundleHeader(header: BundleHeader): Uint8Array {
  const version = new ProtoWriter();
  if (header.version.producer) version.varintField(1, header.version.producer);
  if (header.version.minConsumer) version.varintField(2, header.version.minConsumer);
  for (const bad of header.version.badConsumers) version.varintField(3, bad);
  const writer = new ProtoWriter();
  if (header.numShards) writer.varintField(1, header.numShards);
  if (header.endianness === "big") writer.varintField(2, 1);
  writer.bytesField(3, version.finish());
  return writer.finish();
}

/** Serializes one entry (defaults omitted, crc32c as fixed32). Slices are not written. */
export function encodeBundleEntry(entry: Omit<RawBundleEntry, "sliceCount">): Uint8Array {
  const shape = new ProtoWriter();
  for (const size of entry.shape) {
    shape.bytesField(2, size ? new ProtoWriter().varintField(1, size).finish() : new Uint8Array());
  }
  const writer = new ProtoWriter();
  if (entry.dtype) writer.varintField(1, entry.dtype);
  writer.bytesField(2, shape.finish());
  if (entry.shardId) writer.varintField(3, entry.shardId);
  if (entry.offset) writer.varintField(4, entry.offset);
  if (entry.size) writer.varintField(5, entry.size);
  writer.fixed32Field(6, entry.crc32cMasked);
  return writer.finish();
}
