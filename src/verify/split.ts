// Splitting answers at top-level separators: the relation and structure readers both need it.

/** Top-level pieces of `s` between the matches of `sep` (brackets and escaped braces nest); with the separators. */
export function splitWithOps(s: string, sep: RegExp): { parts: string[]; ops: string[] } {
  const parts: string[] = [];
  const ops: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && (s[i + 1] === '{' || s[i + 1] === '}')) {
      depth += s[i + 1] === '{' ? 1 : -1;
      i++;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0) {
      sep.lastIndex = i;
      const m = sep.exec(s);
      if (m && m.index === i && m[0].length > 0) {
        parts.push(s.slice(start, i).trim());
        ops.push(m[0].trim());
        start = i + m[0].length;
        i = start - 1;
      }
    }
  }
  parts.push(s.slice(start).trim());
  return { parts, ops };
}
