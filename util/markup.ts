/** Text inside XML, SVG and HTML: the one escaper the plots and the report use. */

/** Escapes text for element content and for attribute values in double quotes. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}
