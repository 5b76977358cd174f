// Helpers shared by the fixture scripts and the tests: a canonical JSON view of
// an Automerge document (keys sorted recursively) and a structural comparison
// that treats numbers by value (so 42 written as int64 equals 42 as float64).

/**
 * Returns a plain JSON value: JSON.parse(JSON.stringify(v)) with object keys
 * sorted recursively. Automerge 3 returns uint64 scalars as BigInt, which
 * JSON.stringify rejects; they become numbers here (exact up to 2^53).
 */
export function canonical(value) {
  return sortKeys(JSON.parse(JSON.stringify(value, bigintAsNumber)))
}

function bigintAsNumber(_key, v) {
  if (typeof v !== "bigint") return v
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`integer ${v} cannot be represented exactly as a JSON number`)
  }
  return Number(v)
}

export function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v !== null && typeof v === "object") {
    const out = {}
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k])
    return out
  }
  return v
}

/** Canonical JSON text (sorted keys, 2-space indent, trailing newline). */
export function stringifySorted(value) {
  return JSON.stringify(canonical(value), null, 2) + "\n"
}

/**
 * Compares two plain JSON values. Returns null when they are equal, otherwise a
 * human-readable description of the first difference (with its JSON pointer).
 */
export function firstDifference(actual, expected, path = "") {
  const where = path === "" ? "(root)" : path
  const kind = v => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v)
  const ka = kind(actual)
  const ke = kind(expected)
  if (ka !== ke) {
    return `${where}: expected ${ke} ${JSON.stringify(expected)}, got ${ka} ${JSON.stringify(actual)}`
  }
  if (ka === "array") {
    const n = Math.max(actual.length, expected.length)
    for (let i = 0; i < n; i++) {
      if (i >= actual.length) return `${path}/${i}: missing (expected ${JSON.stringify(expected[i])})`
      if (i >= expected.length) return `${path}/${i}: unexpected element ${JSON.stringify(actual[i])}`
      const d = firstDifference(actual[i], expected[i], `${path}/${i}`)
      if (d) return d
    }
    return null
  }
  if (ka === "object") {
    const keys = new Set([...Object.keys(actual), ...Object.keys(expected)])
    for (const k of [...keys].sort()) {
      const p = `${path}/${k.replace(/~/g, "~0").replace(/\//g, "~1")}`
      if (!(k in actual)) return `${p}: missing (expected ${JSON.stringify(expected[k])})`
      if (!(k in expected)) return `${p}: unexpected key with value ${JSON.stringify(actual[k])}`
      const d = firstDifference(actual[k], expected[k], p)
      if (d) return d
    }
    return null
  }
  // numbers compare by value (int64 42 == float64 42); other scalars strictly
  if (actual !== expected) {
    return `${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`
  }
  return null
}
