/** What a public file is: where it comes from, where it lives locally, how it is checked. */

/** A public file: where to get it, where it lives locally, and how to check it. */
export interface RemoteFile {
  /** Where it is downloaded from. */
  url: string;
  /** Where the file lives under the mirror and cache folders, e.g. "workshop/the-verdict.txt". */
  path: string;
  /**
   * Lowercase hex sha256 of the content; checked after download (and on mirror copies) when given.
   */
  sha256?: string;
  /** Size in bytes; checked like `sha256` when given. */
  size?: number;
  /**
   * Where the file lives in the download cache when that differs from `path` (e.g. a Hugging
   * Face file under its commit, since `config.json` at another revision is another file).
   */
  cachePath?: string;
  /**
   * Whether a mirror may also hold the file under its bare name at the top level (default
   * true). False for names that many publications share, such as a repository's `config.json`.
   */
  flatMirror?: boolean;
}
