/**
 * An RFC 4180 CSV parser for the original MMLU release: fields separated by commas, records by
 * LF or CRLF; a field in double quotes may hold commas, line breaks and `""` (one quote). Errors
 * name the file, the line (1-based, counting the line breaks inside quoted fields) and what was
 * expected.
 */

export class CsvError extends Error {
  constructor(readonly source: string, readonly line: number, message: string) {
    super(`${source}:${line}: ${message}`);
    this.name = "CsvError";
  }
}

/** One record: its fields and the line it starts on. */
export interface CsvRecord {
  fields: string[];
  line: number;
}

/** Parses `text` into records; a final line break does not start an empty record. */
export function parseCsv(text: string, source = "<csv>"): CsvRecord[] {
  const records: CsvRecord[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  if (text.charCodeAt(0) === 0xfeff) i = 1; // a UTF-8 byte order mark is not data
  while (i < n) {
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let field = "";
      if (text[i] === '"') {
        const quoteLine = line;
        i++;
        for (;;) {
          if (i >= n) {
            throw new CsvError(
              source,
              quoteLine,
              "a quoted field is never closed: expected a closing '\"' before the end of the file",
            );
          }
          const c = text[i];
          if (c === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === "\n") line++;
          field += c;
          i++;
        }
        if (i < n && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          throw new CsvError(
            source,
            line,
            `expected ',' or the end of the line after a closing quote, found ${
              JSON.stringify(text[i])
            }`,
          );
        }
      } else {
        while (i < n && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          if (text[i] === '"') {
            throw new CsvError(
              source,
              line,
              'a \'"\' inside an unquoted field: expected the field to be quoted with "" for each quote',
            );
          }
          field += text[i++];
        }
      }
      fields.push(field);
      if (i < n && text[i] === ",") {
        i++;
        continue;
      }
      break;
    }
    if (text[i] === "\r") i++;
    if (i < n && text[i] !== "\n") {
      throw new CsvError(source, line, `expected a line feed after a carriage return`);
    }
    if (i < n) {
      i++;
      line++;
    }
    records.push({ fields, line: start });
  }
  return records;
}
