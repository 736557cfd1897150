/**
 * The small part of the protobuf wire format a TensorBundle index needs, written by hand:
 * varints, fixed32/fixed64, length-delimited fields, and skipping fields we do not know.
 * (Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32; 3/4 are deprecated groups.)
 */
import { ProtobufError } from "../errors.ts";

export const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

/** Sequential reader over one serialized message. `where` prefixes every error message. */
export class ProtoReader {
  pos = 0;
  constructor(readonly bytes: Uint8Array, readonly where: string) {}

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  /** Reads a field key; returns the field number and wire type. */
  readTag(): { field: number; wireType: number } {
    const at = this.pos;
    const key = this.readVarint();
    const field = Math.floor(key / 8);
    if (field === 0) {
      throw new ProtobufError(`${this.where}: invalid protobuf field number 0 at byte ${at}`);
    }
    return { field, wireType: key % 8 };
  }

  /**
   * Reads a varint as a non-negative integer. Negative int32/int64 values are encoded as
   * 10-byte two's-complement varints; they come back as negative numbers. Values beyond
   * 2^53 cannot be represented exactly and are rejected.
   */
  readVarint(): number {
    const at = this.pos;
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.bytes.length) {
        throw new ProtobufError(`${this.where}: truncated varint at byte ${at}`);
      }
      const byte = this.bytes[this.pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) {
        const signed = BigInt.asIntN(64, value);
        if (signed > BigInt(Number.MAX_SAFE_INTEGER) || signed < -BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new ProtobufError(
            `${this.where}: varint at byte ${at} does not fit a safe integer`,
          );
        }
        return Number(signed);
      }
    }
    throw new ProtobufError(`${this.where}: varint at byte ${at} is longer than 10 bytes`);
  }

  readFixed32(): number {
    this.need(4, "fixed32");
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  }

  /** Reads the payload of a length-delimited field (a view, not a copy). */
  readBytes(): Uint8Array {
    const length = this.readVarint();
    if (length < 0) throw new ProtobufError(`${this.where}: negative length at byte ${this.pos}`);
    this.need(length, "length-delimited field");
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /** Skips one field's value of the given wire type. */
  skip(wireType: number, field: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.readVarint();
        return;
      case WIRE_FIXED64:
        this.need(8, "fixed64");
        this.pos += 8;
        return;
      case WIRE_LENGTH_DELIMITED:
        this.readBytes();
        return;
      case WIRE_FIXED32:
        this.need(4, "fixed32");
        this.pos += 4;
        return;
      default:
        throw new ProtobufError(
          `${this.where}: unsupported protobuf wire type ${wireType} for field ${field} ` +
            `at byte ${this.pos}`,
        );
    }
  }

  /** Throws unless the field has the wire type its schema says. */
  expectWireType(field: number, wireType: number, expected: number, name: string): void {
    if (wireType !== expected) {
      throw new ProtobufError(
        `${this.where}: field ${field} (${name}) has wire type ${wireType}, expected ${expected}`,
      );
    }
  }

  private need(count: number, what: string): void {
    if (this.pos + count > this.bytes.length) {
      throw new ProtobufError(
        `${this.where}: truncated ${what} at byte ${this.pos}: needs ${count} byte(s), ` +
          `${this.bytes.length - this.pos} left`,
      );
    }
  }
}

/** Appends protobuf fields to a growing byte list. */
export class ProtoWriter {
  private readonly out: number[] = [];

  /** A varint field; zero is written too (callers skip proto3 defaults themselves). */
  varintField(field: number, value: number): this {
    this.varint(field * 8 + WIRE_VARINT);
    this.varint(value);
    return this;
  }

  fixed32Field(field: number, value: number): this {
    this.varint(field * 8 + WIRE_FIXED32);
    const v = value >>> 0;
    this.out.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
    return this;
  }

  bytesField(field: number, payload: Uint8Array): this {
    this.varint(field * 8 + WIRE_LENGTH_DELIMITED);
    this.varint(payload.length);
    for (const byte of payload) this.out.push(byte);
    return this;
  }

  /** Varint encoding of a safe integer; negatives use the 10-byte two's-complement form. */
  varint(value: number): this {
    if (!Number.isSafeInteger(value)) throw new Error(`cannot encode ${value} as a varint`);
    pushVarint(this.out, value);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

/** Appends the varint encoding of a safe integer (negatives as 64-bit two's complement). */
export function pushVarint(out: number[], value: number): void {
  let v = BigInt.asUintN(64, BigInt(value));
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? byte | 0x80 : byte);
  } while (v > 0n);
}
