// draw-core.js: the algorithms of gongkai-draw/1 (shared/lottery-spec.md) in plain
// JavaScript, for verifying a draw in the browser. An ES module with no dependencies and
// no build step; it runs in a page, in a Worker and under Node (>= 20) alike.
//
// Exports (hashes are Uint8Array(32) unless stated; functions that take a hash also take
// it as 64 lowercase hex digits):
//
//   hex(bytes) -> string                lowercase hex
//   fromHex(text, length?) -> Uint8Array strict lowercase hex (throws on anything else)
//   utf8(text) -> Uint8Array
//   equalBytes(a, b) -> boolean
//   sha256(bytes) -> Uint8Array          SHA-256 (synchronous; checked against WebCrypto)
//   Sha256                               incremental: new Sha256().update(b).update(c).digest()
//   sha256WebCrypto(bytes) -> Promise<Uint8Array>   crypto.subtle.digest("SHA-256", ...)
//   label(name) -> Uint8Array            L(name) = "gongkai-draw/1/<name>" || 0x00
//   jcs(value) -> string                 RFC 8785 canonical JSON (strings, integers,
//                                        booleans, null, arrays, objects)
//   leafHash(leaf) -> Uint8Array         H(0x00 || JCS(leaf)), the RFC 6962 leaf hash
//   nodeHash(left, right) -> Uint8Array  H(0x01 || left || right)
//   merkleRoot(leafHashes) -> Uint8Array RFC 6962 Merkle Tree Hash (MTH({}) = H(""))
//   merkleRootFlat(flat, n) -> Uint8Array the same over n hashes stored back to back
//   sha256Into(bytes, start, end, out, outAt)  SHA-256 of a range, written into `out`
//   verifyInclusion(leafHash, leafIndex, treeSize, auditPath, root) -> boolean
//                                        RFC 9162 section 2.1.3.2. Takes exactly the fields
//                                        of POST /api/v1/draws/{id}/proof: leaf_index,
//                                        tree_size, audit_path (hex list), root (hex).
//   identityCommitment(salt, childId, childName) -> string   idc of a leaf (hex)
//   witnessCommitment(drawId, secret) -> Uint8Array          H(L("commit")||D||0x00||secret)
//   seedOf(announcementHash, beaconText|null, secrets[]) -> Uint8Array   spec section 4
//   chacha20Block(key, counter, nonce) -> Uint32Array(16)    64-bit counter, 64-bit nonce
//                                        (counter and nonce as [low32, high32])
//   ChaChaStream                         new ChaChaStream(seed): next() -> BigInt u64,
//                                        uniform(n) -> number in [0, n)
//   lotteryOrder(seed, n) -> Uint32Array element p = initial position of lottery number p+1
//   allocate(units, seats, mechanism, multiples, onProgress?) -> {admitted, waitlists, placed}
//                                        units: [{size, picks: [{kg, cls}]}] in lottery
//                                        order; kg = kindergarten index. Lists hold unit
//                                        numbers (lottery positions) in rank order.
//   isSmallOrderPoint(bytes) -> boolean  Ed25519 point of order 1, 2, 4 or 8 (or invalid)
//   verifyEd25519(publicKey, signature, message) -> Promise<boolean>  strict (WebCrypto
//                                        plus the small-order and canonical-s checks of
//                                        ed25519-dalek's verify_strict)

// ---------------------------------------------------------------------------------------
// Bytes and hex

const HEX_DIGITS = "0123456789abcdef";

export function hex(bytes) {
    let out = "";
    for (let i = 0; i < bytes.length; i++) {
        out += HEX_DIGITS[bytes[i] >> 4] + HEX_DIGITS[bytes[i] & 15];
    }
    return out;
}

function nibble(code) {
    if (code >= 48 && code <= 57) return code - 48;
    if (code >= 97 && code <= 102) return code - 87;
    return -1;
}

/// Strict lowercase hex; `length` is the expected number of bytes, when given.
export function fromHex(text, length) {
    if (typeof text !== "string") throw new Error("expected a hex string");
    if (length !== undefined && text.length !== 2 * length) {
        throw new Error(`expected ${2 * length} hex digits, found ${text.length}`);
    }
    if (text.length % 2 !== 0) throw new Error("odd number of hex digits");
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) {
        const hi = nibble(text.charCodeAt(2 * i));
        const lo = nibble(text.charCodeAt(2 * i + 1));
        if (hi < 0 || lo < 0) throw new Error("expected lowercase hex digits (0-9, a-f)");
        out[i] = (hi << 4) | lo;
    }
    return out;
}

const encoder = new TextEncoder();

export function utf8(text) {
    return encoder.encode(text);
}

export function equalBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
}

function concat(parts) {
    let length = 0;
    for (const p of parts) length += p.length;
    const out = new Uint8Array(length);
    let at = 0;
    for (const p of parts) {
        out.set(p, at);
        at += p.length;
    }
    return out;
}

function asHash(value) {
    return typeof value === "string" ? fromHex(value, 32) : value;
}

// ---------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4). Synchronous, because a million leaves hashed one WebCrypto call
// at a time would cost more in promises than in hashing. The page checks it against
// WebCrypto before use, and the unit tests against both WebCrypto and known vectors.

const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
]);

const H0 = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const W = new Int32Array(64);

/// One SHA-256 compression of bytes[at..at+64] into the state h.
function compress(h, bytes, at) {
    const w = W;
    for (let j = 0; j < 16; j++) {
        const o = at + 4 * j;
        w[j] = (bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3];
    }
    for (let j = 16; j < 64; j++) {
        const a = w[j - 15];
        const b = w[j - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        w[j] = (w[j - 16] + s0 + w[j - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let j = 0; j < 64; j++) {
        const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = (e & f) ^ (~e & g);
        const t1 = (hh + s1 + ch + K[j] + w[j]) | 0;
        const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (s0 + maj) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0;
    h[1] = (h[1] + b) | 0;
    h[2] = (h[2] + c) | 0;
    h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0;
    h[5] = (h[5] + f) | 0;
    h[6] = (h[6] + g) | 0;
    h[7] = (h[7] + hh) | 0;
}

/// Pads the tail (block[0..filled], `total` bytes hashed in all) and writes the digest.
function finish(h, block, filled, total, out, outAt) {
    block[filled] = 0x80;
    block.fill(0, filled + 1);
    if (filled >= 56) {
        compress(h, block, 0);
        block.fill(0);
    }
    const high = Math.floor(total / 0x20000000); // (8 * total) / 2^32
    const low = (total * 8) >>> 0;
    block[56] = high >>> 24; block[57] = high >>> 16; block[58] = high >>> 8; block[59] = high;
    block[60] = low >>> 24; block[61] = low >>> 16; block[62] = low >>> 8; block[63] = low;
    compress(h, block, 0);
    for (let j = 0; j < 8; j++) {
        const v = h[j];
        out[outAt + 4 * j] = v >>> 24;
        out[outAt + 4 * j + 1] = v >>> 16;
        out[outAt + 4 * j + 2] = v >>> 8;
        out[outAt + 4 * j + 3] = v;
    }
}

export class Sha256 {
    constructor() {
        this.h = Int32Array.from(H0);
        this.block = new Uint8Array(64);
        this.filled = 0;
        this.total = 0;
    }

    /// Hashes bytes[start..end] (all of `bytes` by default).
    update(bytes, start = 0, end = bytes.length) {
        let i = start;
        this.total += end - start;
        const block = this.block;
        if (this.filled > 0) {
            while (this.filled < 64 && i < end) block[this.filled++] = bytes[i++];
            if (this.filled < 64) return this;
            compress(this.h, block, 0);
            this.filled = 0;
        }
        for (; i + 64 <= end; i += 64) compress(this.h, bytes, i);
        while (i < end) block[this.filled++] = bytes[i++];
        return this;
    }

    digest() {
        const out = new Uint8Array(32);
        finish(this.h, this.block, this.filled, this.total, out, 0);
        return out;
    }
}

const ONE_SHOT_H = new Int32Array(8);
const ONE_SHOT_BLOCK = new Uint8Array(64);

/// SHA-256 of bytes[start..end] written to out[outAt..outAt+32], without allocating.
export function sha256Into(bytes, start, end, out, outAt) {
    const h = ONE_SHOT_H;
    h.set(H0);
    let i = start;
    for (; i + 64 <= end; i += 64) compress(h, bytes, i);
    const block = ONE_SHOT_BLOCK;
    let filled = 0;
    while (i < end) block[filled++] = bytes[i++];
    finish(h, block, filled, end - start, out, outAt);
}

export function sha256(bytes) {
    const out = new Uint8Array(32);
    sha256Into(bytes, 0, bytes.length, out, 0);
    return out;
}

export async function sha256WebCrypto(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export function label(name) {
    return utf8(`gongkai-draw/1/${name}\0`);
}

// ---------------------------------------------------------------------------------------
// RFC 8785 canonical JSON. The draw's objects hold only strings, integers below 2^53,
// null and booleans; ECMAScript's JSON.stringify serialises strings and such numbers
// exactly as RFC 8785 requires. Keys are sorted by UTF-16 code units, which is what
// JavaScript's default string comparison does.

export function jcs(value) {
    if (value === null || typeof value === "boolean") return JSON.stringify(value);
    if (typeof value === "string") return JSON.stringify(value);
    if (typeof value === "number") {
        if (!Number.isFinite(value)) throw new Error("NaN and infinities have no JSON form");
        return JSON.stringify(value); // ECMAScript number serialisation, as RFC 8785 says
    }
    if (typeof value === "bigint") {
        if (value < 0n || value >= 2n ** 53n) throw new Error("integer out of range");
        return value.toString();
    }
    if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
    if (typeof value === "object") {
        const keys = Object.keys(value).filter((k) => value[k] !== undefined);
        keys.sort(compareUtf16);
        return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(value[k])}`).join(",")}}`;
    }
    throw new Error(`no JSON form for ${typeof value}`);
}

function compareUtf16(a, b) {
    return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------
// Leaves and the Merkle tree (RFC 6962 / RFC 9162)

const LEAF_PREFIX = new Uint8Array([0]);

export function leafHash(leaf) {
    return new Sha256().update(LEAF_PREFIX).update(utf8(jcs(leaf))).digest();
}

const NODE_BUFFER = new Uint8Array(65);

export function nodeHash(left, right) {
    NODE_BUFFER[0] = 1;
    NODE_BUFFER.set(asHash(left), 1);
    NODE_BUFFER.set(asHash(right), 33);
    return sha256(NODE_BUFFER);
}

/// MTH over the leaf hashes (a list), bottom up: pairing neighbours level by level and
/// carrying an odd last node up unchanged gives the same tree as the recursive definition
/// (the left subtree always being the largest power of two below the count).
export function merkleRoot(leafHashes, onProgress) {
    const flat = new Uint8Array(32 * leafHashes.length);
    leafHashes.forEach((h, i) => flat.set(asHash(h), 32 * i));
    return merkleRootFlat(flat, leafHashes.length, onProgress);
}

/// merkleRoot over n hashes stored back to back in `flat`, which is overwritten (each
/// level is written over the one below it).
export function merkleRootFlat(flat, n, onProgress) {
    if (n === 0) return sha256(new Uint8Array(0));
    const scratch = new Uint8Array(65);
    scratch[0] = 1;
    let count = n;
    let done = 0;
    while (count > 1) {
        const pairs = count >> 1;
        for (let i = 0; i < pairs; i++) {
            scratch.set(flat.subarray(64 * i, 64 * i + 64), 1);
            sha256Into(scratch, 0, 65, flat, 32 * i);
            if (onProgress && ++done % 65536 === 0) onProgress(done / (n - 1));
        }
        if (count % 2 === 1) flat.copyWithin(32 * pairs, 32 * (count - 1), 32 * count);
        count = pairs + (count % 2);
    }
    return flat.slice(0, 32);
}

/// RFC 9162 section 2.1.3.2: whether `leafHash` is leaf `leafIndex` of the tree of
/// `treeSize` leaves with root `root`, by the audit path `auditPath` (hashes, leaf first).
export function verifyInclusion(leafHash, leafIndex, treeSize, auditPath, root) {
    if (!Number.isSafeInteger(leafIndex) || !Number.isSafeInteger(treeSize)) return false;
    if (leafIndex < 0 || leafIndex >= treeSize) return false;
    let fn = BigInt(leafIndex);
    let sn = BigInt(treeSize - 1);
    let r;
    let path;
    let expected;
    try {
        r = asHash(leafHash);
        path = auditPath.map(asHash);
        expected = asHash(root);
    } catch {
        return false;
    }
    for (const p of path) {
        if (sn === 0n) return false;
        if ((fn & 1n) === 1n || fn === sn) {
            r = nodeHash(p, r);
            if ((fn & 1n) === 0n) {
                while ((fn & 1n) === 0n && fn !== 0n) {
                    fn >>= 1n;
                    sn >>= 1n;
                }
            }
        } else {
            r = nodeHash(r, p);
        }
        fn >>= 1n;
        sn >>= 1n;
    }
    return sn === 0n && equalBytes(r, expected);
}

/// `idc = hex(H(L("child") || salt || child_id || 0x00 || child_name))`. The caller
/// normalises as the spec says (NFC, trimmed name; upper-case X in the ID number).
export function identityCommitment(salt, childId, childName) {
    return hex(
        new Sha256()
            .update(label("child"))
            .update(typeof salt === "string" ? fromHex(salt, 16) : salt)
            .update(utf8(childId))
            .update(new Uint8Array([0]))
            .update(utf8(childName))
            .digest(),
    );
}

export function witnessCommitment(drawId, secret) {
    return new Sha256()
        .update(label("commit"))
        .update(utf8(drawId))
        .update(new Uint8Array([0]))
        .update(asHash(secret))
        .digest();
}

/// `seed = H(L("seed") || announcement_hash || B || secret_1 || ... || secret_m)`.
export function seedOf(announcementHash, beaconText, secrets) {
    const hasher = new Sha256().update(label("seed")).update(asHash(announcementHash));
    hasher.update(beaconText === null ? new Uint8Array(32) : sha256(utf8(beaconText)));
    for (const secret of secrets) hasher.update(asHash(secret));
    return hasher.digest();
}

// ---------------------------------------------------------------------------------------
// ChaCha20 (RFC 8439 block function) with a 64-bit block counter and a 64-bit nonce, as
// rand_chacha's ChaCha20Rng uses it: state words 12-13 are the counter, 14-15 the nonce.

function quarter(x, a, b, c, d) {
    x[a] = (x[a] + x[b]) | 0; x[d] ^= x[a]; x[d] = (x[d] << 16) | (x[d] >>> 16);
    x[c] = (x[c] + x[d]) | 0; x[b] ^= x[c]; x[b] = (x[b] << 12) | (x[b] >>> 20);
    x[a] = (x[a] + x[b]) | 0; x[d] ^= x[a]; x[d] = (x[d] << 8) | (x[d] >>> 24);
    x[c] = (x[c] + x[d]) | 0; x[b] ^= x[c]; x[b] = (x[b] << 7) | (x[b] >>> 25);
}

function keyWords(key) {
    const bytes = asHash(key);
    const words = new Uint32Array(8);
    for (let i = 0; i < 8; i++) {
        words[i] =
            bytes[4 * i] | (bytes[4 * i + 1] << 8) | (bytes[4 * i + 2] << 16) | (bytes[4 * i + 3] << 24);
    }
    return words;
}

function blockInto(out, keyW, counterLo, counterHi, nonceLo, nonceHi) {
    const s = out;
    s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
    for (let i = 0; i < 8; i++) s[4 + i] = keyW[i];
    s[12] = counterLo; s[13] = counterHi; s[14] = nonceLo; s[15] = nonceHi;
    const x = Int32Array.from(s);
    for (let round = 0; round < 10; round++) {
        quarter(x, 0, 4, 8, 12); quarter(x, 1, 5, 9, 13);
        quarter(x, 2, 6, 10, 14); quarter(x, 3, 7, 11, 15);
        quarter(x, 0, 5, 10, 15); quarter(x, 1, 6, 11, 12);
        quarter(x, 2, 7, 8, 13); quarter(x, 3, 4, 9, 14);
    }
    for (let i = 0; i < 16; i++) s[i] = (x[i] + s[i]) >>> 0;
    return s;
}

/// One ChaCha20 block: 16 little-endian words. `counter` and `nonce` are [low32, high32].
/// For RFC 8439's 96-bit nonce layout pass counter = [c, n0] and nonce = [n1, n2].
export function chacha20Block(key, counter, nonce) {
    return blockInto(new Uint32Array(16), keyWords(key), counter[0] >>> 0, counter[1] >>> 0,
        nonce[0] >>> 0, nonce[1] >>> 0);
}

const TWO_32 = 0x100000000;

/// The spec's random stream: ChaCha20 keyed with the seed, counter from 0, nonce 0;
/// next() is the next 8 keystream bytes as a little-endian u64.
export class ChaChaStream {
    constructor(seed) {
        this.key = keyWords(seed);
        this.block = new Uint32Array(16);
        this.counterLo = 0;
        this.counterHi = 0;
        this.index = 16;
    }

    /// The next u64 as [low32, high32].
    nextWords() {
        if (this.index >= 16) {
            blockInto(this.block, this.key, this.counterLo, this.counterHi, 0, 0);
            this.counterLo = (this.counterLo + 1) >>> 0;
            if (this.counterLo === 0) this.counterHi = (this.counterHi + 1) >>> 0;
            this.index = 0;
        }
        const lo = this.block[this.index];
        const hi = this.block[this.index + 1];
        this.index += 2;
        return [lo, hi];
    }

    next() {
        const [lo, hi] = this.nextWords();
        return (BigInt(hi) << 32n) | BigInt(lo);
    }

    /// uniform(n): zone = 2^64 - (2^64 mod n); loop { w = next(); if w < zone: return w mod n }
    uniform(n) {
        if (!Number.isSafeInteger(n) || n < 1) throw new Error("uniform(n) needs 1 <= n < 2^53");
        if (n < TWO_32) {
            // excess = 2^64 mod n < n < 2^32, so the zone is 2^64 - excess and only words
            // with high half 0xffffffff can be rejected. w mod n in doubles without loss:
            // ((hi mod n) * 2^16 mod n) * 2^16 + lo, every product below 2^53.
            const excess = Number((1n << 64n) % BigInt(n));
            for (;;) {
                const [lo, hi] = this.nextWords();
                if (excess !== 0 && hi === 0xffffffff && lo >= TWO_32 - excess) continue;
                let r = ((hi % n) * 65536) % n;
                r = (r * 65536 + lo) % n;
                return r;
            }
        }
        const big = BigInt(n);
        const zone = (1n << 64n) - ((1n << 64n) % big);
        for (;;) {
            const w = this.next();
            if (w < zone) return Number(w % big);
        }
    }
}

/// Fisher-Yates as the spec writes it: element p of the result is the initial position (in
/// unit-id order) of the unit with lottery number p + 1.
export function lotteryOrder(seed, n, onProgress) {
    const stream = new ChaChaStream(seed);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i >= 1; i--) {
        const j = stream.uniform(i + 1);
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
        if (onProgress && i % 65536 === 0) onProgress((n - i) / n);
    }
    return order;
}

// ---------------------------------------------------------------------------------------
// Allocation (spec section 6). Units are numbered by lottery position (0 has lottery
// number 1), so a rank at a kindergarten is the pair (class, unit number), smaller first.
// A candidate is stored as one number, rank(class) * n + unit, with classes replaced by
// their position among the distinct classes: plain numbers sort and compare fast, and
// stay exact (below 2^53) for any realistic draw.

/// Units as flat typed arrays, with every pick's candidate key precomputed.
function table(units) {
    const n = units.length;
    const classes = new Set();
    let total = 0;
    for (const u of units) {
        total += u.picks.length;
        for (const p of u.picks) classes.add(p.cls);
    }
    const ranked = [...classes].sort((a, b) => a - b);
    if (ranked.length * Math.max(n, 1) >= 2 ** 53) throw new Error("too many classes and units");
    const rank = new Map(ranked.map((c, i) => [c, i]));
    const sizes = new Float64Array(n);
    const starts = new Uint32Array(n + 1);
    const kgs = new Uint32Array(total);
    const keys = new Float64Array(total);
    let at = 0;
    units.forEach((u, unit) => {
        sizes[unit] = u.size;
        starts[unit] = at;
        for (const p of u.picks) {
            kgs[at] = p.kg;
            keys[at] = rank.get(p.cls) * n + unit;
            at++;
        }
    });
    starts[n] = at;
    return { n, sizes, starts, kgs, keys };
}

const unitOf = (key, n) => key % n;

/// A kindergarten fills from `candidates` (keys in rank order) with `seats` seats:
/// accepted keys go to `accepted`, rejected units to `rejected`. Returns the seats left.
function fill(t, candidates, seats, overfill, accepted, rejected) {
    let left = seats;
    for (let i = 0; i < candidates.length; i++) {
        const key = candidates[i];
        const size = t.sizes[unitOf(key, t.n)];
        if (size <= left) {
            left -= size;
            accepted.push(key);
        } else if (overfill && left > 0) {
            left = 0;
            accepted.push(key);
        } else if (rejected) {
            rejected.push(unitOf(key, t.n));
        }
    }
    return left;
}

function mergeSorted(a, b) {
    const out = new Float64Array(a.length + b.length);
    let i = 0, j = 0, k = 0;
    while (i < a.length && j < b.length) out[k++] = a[i] <= b[j] ? a[i++] : b[j++];
    while (i < a.length) out[k++] = a[i++];
    while (j < b.length) out[k++] = b[j++];
    return out;
}

function deferredAcceptance(t, seats, overfill, onProgress) {
    const { n, starts, kgs, keys } = t;
    const nextChoice = new Uint8Array(n);
    const held = seats.map(() => []);
    const proposals = seats.map(() => []);
    let free = [];
    for (let u = 0; u < n; u++) free.push(u);
    while (free.length > 0) {
        // Rounds shrink fast, then trickle: report the share of units no longer proposing.
        if (onProgress) onProgress(1 - free.length / n);
        const touched = [];
        for (const unit of free) {
            const at = starts[unit] + nextChoice[unit];
            if (at < starts[unit + 1]) {
                nextChoice[unit]++;
                const g = kgs[at];
                if (proposals[g].length === 0) touched.push(g);
                proposals[g].push(keys[at]);
            }
        }
        free = [];
        for (const g of touched) {
            const fresh = Float64Array.from(proposals[g]).sort();
            proposals[g] = [];
            const merged = mergeSorted(held[g], fresh);
            held[g] = [];
            fill(t, merged, seats[g], overfill, held[g], free);
        }
    }
    const placed = new Array(n).fill(null);
    for (const list of held) for (const key of list) placed[unitOf(key, n)] = nextChoice[unitOf(key, n)] - 1;
    return { admitted: held.map((list) => list.map((key) => unitOf(key, n))), placed };
}

function immediateAcceptance(t, seats, overfill, onProgress) {
    const { n, starts, kgs, keys } = t;
    const left = seats.slice();
    const placed = new Array(n).fill(null);
    const admitted = seats.map(() => []);
    let waiting = [];
    for (let u = 0; u < n; u++) waiting.push(u);
    for (let round = 0; waiting.length > 0; round++) {
        if (onProgress) onProgress(1 - waiting.length / n);
        const applicants = new Map();
        const still = [];
        for (const unit of waiting) {
            const at = starts[unit] + round;
            if (at >= starts[unit + 1]) continue; // no choice left: stays unadmitted
            still.push(unit);
            let list = applicants.get(kgs[at]);
            if (!list) applicants.set(kgs[at], (list = []));
            list.push(keys[at]);
        }
        for (const [g, list] of applicants) {
            const before = admitted[g].length;
            left[g] = fill(t, Float64Array.from(list).sort(), left[g], overfill, admitted[g], null);
            for (let i = before; i < admitted[g].length; i++) placed[unitOf(admitted[g][i], n)] = round;
        }
        waiting = still.filter((unit) => placed[unit] === null);
    }
    return {
        admitted: admitted.map((list) => Array.from(Float64Array.from(list).sort(), (key) => unitOf(key, n))),
        placed,
    };
}

/// The waitlist of kindergarten g: units that chose g, were not admitted to g and not to a
/// choice ranked above g, in rank order at g. For a unit admitted to its choice c these are
/// its choices before c; for an unadmitted unit, all of them.
function waitlists(t, kindergartens, placed) {
    const { n, starts, kgs, keys } = t;
    const lists = [];
    for (let g = 0; g < kindergartens; g++) lists.push([]);
    for (let unit = 0; unit < n; unit++) {
        const end = placed[unit] === null ? starts[unit + 1] : starts[unit] + placed[unit];
        for (let at = starts[unit]; at < end; at++) lists[kgs[at]].push(keys[at]);
    }
    return lists.map((list) => Array.from(Float64Array.from(list).sort(), (key) => unitOf(key, n)));
}

/// Allocates units (lottery order; `{size, picks: [{kg, cls}]}`) to kindergartens with
/// `seats[g]` seats. `mechanism`: "deferred-acceptance" | "immediate-acceptance";
/// `multiples`: "whole-or-skip" | "whole-or-overfill". Lists hold unit numbers.
export function allocate(units, seats, mechanism, multiples, onProgress) {
    const overfill = multiples === "whole-or-overfill";
    const t = table(units);
    let result;
    if (mechanism === "deferred-acceptance") result = deferredAcceptance(t, seats, overfill, onProgress);
    else if (mechanism === "immediate-acceptance") result = immediateAcceptance(t, seats, overfill, onProgress);
    else throw new Error(`unknown mechanism ${mechanism}`);
    return { ...result, waitlists: waitlists(t, seats.length, result.placed) };
}

// ---------------------------------------------------------------------------------------
// Ed25519, strictly: WebCrypto verifies the equation (and refuses s >= L); the small-order
// public keys and R values that pass lax verification are refused here first, as
// ed25519-dalek's verify_strict refuses them.

const P = (1n << 255n) - 19n;
const L_ORDER = (1n << 252n) + 27742317777372353535851937790883648493n;

function mod(a) {
    const r = a % P;
    return r < 0n ? r + P : r;
}

function power(base, exponent) {
    let result = 1n;
    let b = mod(base);
    let e = exponent;
    while (e > 0n) {
        if (e & 1n) result = (result * b) % P;
        b = (b * b) % P;
        e >>= 1n;
    }
    return result;
}

const inverse = (a) => power(a, P - 2n);
const D = mod(-121665n * inverse(121666n));
const SQRT_M1 = power(2n, (P - 1n) / 4n);

function littleEndian(bytes) {
    let n = 0n;
    for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
    return n;
}

/// Decompresses an Edwards point (y reduced mod p, as curve25519-dalek does); null when no
/// point has this encoding.
function decompress(bytes) {
    const sign = bytes[31] >> 7;
    const copy = Uint8Array.from(bytes);
    copy[31] &= 0x7f;
    const y = mod(littleEndian(copy));
    const u = mod(y * y - 1n);
    const v = mod(D * y * y + 1n);
    // x = sqrt(u / v) = u v^3 (u v^7)^((p - 5) / 8), corrected by sqrt(-1) when needed.
    let x = mod(u * power(v, 3n) * power(u * power(v, 7n), (P - 5n) / 8n));
    const check = mod(v * x * x);
    if (check === mod(-u)) x = mod(x * SQRT_M1);
    else if (check !== u) return null;
    if (x === 0n && sign === 1) return null;
    if (Number(x & 1n) !== sign) x = mod(-x);
    return { x, y };
}

function double({ x, y }) {
    // Twisted Edwards, a = -1, complete formulas (denominators never vanish).
    const xx = mod(x * x);
    const yy = mod(y * y);
    return {
        x: mod(2n * x * y * inverse(mod(yy - xx))),
        y: mod((yy + xx) * inverse(mod(2n + xx - yy))),
    };
}

/// True for the encodings of points of order 1, 2, 4 or 8 (and for invalid encodings).
export function isSmallOrderPoint(bytes) {
    let point = decompress(bytes);
    if (point === null) return true;
    for (let i = 0; i < 3; i++) point = double(point);
    return point.x === 0n && point.y === 1n;
}

export async function verifyEd25519(publicKey, signature, message) {
    const key = typeof publicKey === "string" ? fromHex(publicKey, 32) : publicKey;
    const sig = typeof signature === "string" ? fromHex(signature, 64) : signature;
    if (key.length !== 32 || sig.length !== 64) return false;
    if (isSmallOrderPoint(key) || isSmallOrderPoint(sig.subarray(0, 32))) return false;
    if (littleEndian(sig.subarray(32)) >= L_ORDER) return false;
    try {
        const imported = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, [
            "verify",
        ]);
        return await crypto.subtle.verify({ name: "Ed25519" }, imported, sig, message);
    } catch {
        return false;
    }
}
