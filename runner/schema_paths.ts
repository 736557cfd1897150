/**
 * Small helpers to look inside zod schemas: which keys an object accepts at a path (for
 * "did you mean" hints) and which sub-schema a `--set` value must satisfy.
 */
import type { z } from "zod";

// deno-lint-ignore no-explicit-any
type AnySchema = z.ZodType & { _zod: { def: any } };

/** Strip optional/default/nullable/pipe wrappers down to the schema that holds the shape. */
function unwrapSchema(schema: z.ZodType): z.ZodType {
  let current = schema as AnySchema;
  for (let i = 0; i < 20; i++) {
    const def = current._zod.def;
    if (def.innerType) current = def.innerType;
    else if (def.type === "pipe") current = def.in;
    else if (def.type === "lazy") current = def.getter();
    else break;
  }
  return current;
}

/** The schema at a key path, or undefined where the path leaves the schema's known keys. */
export function schemaAt(schema: z.ZodType, path: (string | number)[]): z.ZodType | undefined {
  let current: z.ZodType | undefined = schema;
  for (const key of path) {
    if (!current) return undefined;
    const inner = unwrapSchema(current) as AnySchema;
    const def = inner._zod.def;
    if (def.type === "object") current = def.shape[key as string];
    else if (def.type === "array") current = def.element;
    else if (def.type === "record") current = def.valueType;
    else if (def.type === "union") {
      current = def.options.map((o: z.ZodType) => schemaAt(o, [key])).find(Boolean);
    } else return undefined;
  }
  return current;
}

/** Keys an object schema (or any object branch of a union) accepts at a path. */
export function knownKeysAt(schema: z.ZodType, path: (string | number)[]): string[] {
  const target = schemaAt(schema, path);
  if (!target) return [];
  const inner = unwrapSchema(target) as AnySchema;
  const def = inner._zod.def;
  if (def.type === "object") return Object.keys(def.shape);
  if (def.type === "union") {
    return [...new Set(def.options.flatMap((o: z.ZodType) => knownKeysAt(o, [])))] as string[];
  }
  return [];
}
