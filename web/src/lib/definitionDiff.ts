// Side-by-side diff of two tool definitions (the approved pin and the latest one seen upstream),
// with invisible and bidirectional Unicode shown escaped so that nothing hidden passes review.

/** Code points that render as nothing, or reorder the text around them. */
export function isHiddenCodePoint(cp: number): boolean {
  return (
    (cp < 0x20 && cp !== 0x0a && cp !== 0x09) || // C0 controls (newline and tab are visible)
    (cp >= 0x7f && cp <= 0x9f) || // DEL and C1 controls
    cp === 0x00ad || // soft hyphen
    cp === 0x034f || // combining grapheme joiner
    cp === 0x061c || // Arabic letter mark
    cp === 0x115f ||
    cp === 0x1160 ||
    cp === 0x3164 ||
    cp === 0xffa0 || // Hangul fillers
    cp === 0x180e || // Mongolian vowel separator
    (cp >= 0x200b && cp <= 0x200f) || // zero-width space/joiners, LRM, RLM
    (cp >= 0x2028 && cp <= 0x202e) || // line/paragraph separators, bidi embeddings and overrides
    (cp >= 0x2060 && cp <= 0x206f) || // word joiner, invisible operators, bidi isolates
    cp === 0xfeff || // zero-width no-break space (BOM)
    (cp >= 0xfe00 && cp <= 0xfe0f) || // variation selectors
    (cp >= 0xfff9 && cp <= 0xfffb) || // interlinear annotation
    (cp >= 0xe0000 && cp <= 0xe007f) || // tag characters
    (cp >= 0xe0100 && cp <= 0xe01ef) // variation selectors supplement
  );
}

/** The text with every hidden code point written `\u{…}` (lower-case hex, as the API does). */
export function escapeHidden(text: string): string {
  let out = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    out += isHiddenCodePoint(cp) ? `\\u{${cp.toString(16)}}` : ch;
  }
  return out;
}

/** Whether the text holds any hidden code point. */
export function hasHidden(text: string): boolean {
  for (const ch of text) {
    if (isHiddenCodePoint(ch.codePointAt(0)!)) return true;
  }
  return false;
}

/** JSON with object keys sorted at every level, two-space indented: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 2) ?? "null";
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value as Record<string, unknown>).sort()) {
      out[key] = sortKeys((value as Record<string, unknown>)[key]);
    }
    return out;
  }
  return value;
}

export type Op = { kind: "same" | "removed" | "added"; text: string };

/** Line diff by longest common subsequence (definitions are small: a few hundred lines). */
export function diffLines(a: string[], b: string[]): Op[] {
  // Common prefix and suffix first: usually most of a definition.
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  const n = midA.length;
  const m = midB.length;
  // lcs[i][j] = LCS length of midA[i..] and midB[j..]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = midA[i] === midB[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops: Op[] = a.slice(0, start).map((text) => ({ kind: "same", text }));
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && midA[i] === midB[j]) {
      ops.push({ kind: "same", text: midA[i] });
      i++;
      j++;
    } else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      // Removals before additions: a replaced block reads old, then new.
      ops.push({ kind: "removed", text: midA[i] });
      i++;
    } else {
      ops.push({ kind: "added", text: midB[j] });
      j++;
    }
  }
  for (const text of a.slice(endA)) ops.push({ kind: "same", text });
  return ops;
}

export type Cell = { line: number; text: string; hidden: boolean };
export type Row = {
  kind: "same" | "removed" | "added" | "changed";
  left: Cell | null;
  right: Cell | null;
};

/**
 * Rows for a side-by-side view: unchanged lines face each other, a block of removed lines faces
 * the block of added lines that replaced it ("changed"), and what is left over of either faces a
 * blank. Cell text is escaped; `hidden` says it held invisible or bidirectional characters.
 */
export function sideBySide(before: unknown, after: unknown): Row[] {
  const left = before === undefined || before === null ? [] : canonicalJson(before).split("\n");
  const right = canonicalJson(after).split("\n");
  const ops = diffLines(left, right);
  const rows: Row[] = [];
  let l = 0;
  let r = 0;
  const cell = (text: string, line: number): Cell => ({
    line,
    text: escapeHidden(text),
    hidden: hasHidden(text),
  });
  let k = 0;
  while (k < ops.length) {
    const op = ops[k];
    if (op.kind === "same") {
      rows.push({ kind: "same", left: cell(op.text, ++l), right: cell(op.text, ++r) });
      k++;
      continue;
    }
    const removed: string[] = [];
    const added: string[] = [];
    while (k < ops.length && ops[k].kind !== "same") {
      (ops[k].kind === "removed" ? removed : added).push(ops[k].text);
      k++;
    }
    const count = Math.max(removed.length, added.length);
    for (let x = 0; x < count; x++) {
      const hasLeft = x < removed.length;
      const hasRight = x < added.length;
      rows.push({
        kind: hasLeft && hasRight ? "changed" : hasLeft ? "removed" : "added",
        left: hasLeft ? cell(removed[x], ++l) : null,
        right: hasRight ? cell(added[x], ++r) : null,
      });
    }
  }
  return rows;
}

/** Counts for a summary line ("3 lines changed, 1 added"). */
export function summarize(rows: Row[]): { changed: number; added: number; removed: number; hidden: number } {
  const s = { changed: 0, added: 0, removed: 0, hidden: 0 };
  for (const row of rows) {
    if (row.kind !== "same") s[row.kind]++;
    if (row.left?.hidden || row.right?.hidden) s.hidden++;
  }
  return s;
}
