// draw-verify.js: verifies a gongkai-draw/1 signed transcript (spec section 8) the way
// `gongkai draw verify` does (lottery/src/verify.rs): the same checks, in the same order,
// with the same short names, so that both name the same failure. Plain ES module; runs in
// a page, in a Worker (verify-worker.js) and under Node.
//
// Exports:
//   CHECKS                      [{name, title}] in the order the checks run (the CLI's
//                               short names and English titles)
//   parseSignedTranscript(text) -> the parsed file, or throws CheckFailure (format,
//                               announcement or leaves, as the CLI attributes it)
//   verifyTranscript(input, {organiserKey, notaryKey}, onProgress) -> Promise of
//       {valid: true, summary} | {valid: false, check, title, detail}
//     input: a string, or bytes (Uint8Array / ArrayBuffer) decoded as strict UTF-8;
//     onProgress(stage, fraction) with stage one of STAGES.
//   STAGES                      progress stage names, in order
//   CheckFailure                the error type: {check, detail}

import {
    Sha256, allocate, fromHex, hex, label, lotteryOrder, merkleRoot,
    seedOf, sha256, utf8, verifyEd25519, witnessCommitment,
} from "./draw-core.js";

export const CHECKS = [
    { name: "format", title: "the file is a well-formed gongkai-draw/1 signed transcript" },
    { name: "announcement", title: "the announcement is well-formed (kindergartens ordered by unique code)" },
    { name: "leaves", title: "leaves are ordered, unique, well-formed and name only announced kindergartens" },
    { name: "groups", title: "groups are consistent" },
    { name: "tree-head", title: "the Merkle root and size match the announcement" },
    { name: "reveals", title: "every reveal matches its commitment" },
    { name: "seed", title: "the seed recomputes" },
    { name: "lottery", title: "the lottery recomputes" },
    { name: "admitted", title: "the admitted lists recompute" },
    { name: "waitlists", title: "the waitlists recompute" },
    {
        name: "organiser-signatures",
        title: "there is at least one organiser signature on the announcement and on the transcript",
    },
    { name: "signatures", title: "every signature verifies" },
    { name: "trusted-keys", title: "signatures come from the trusted keys" },
];

export const STAGES = [
    "read", "parse", "announcement", "leaves", "merkle", "reveals", "lottery", "allocation",
    "compare", "signatures",
];

export class CheckFailure extends Error {
    constructor(check, detail) {
        super(`check failed: ${check} (${detail})`);
        this.check = check;
        this.detail = detail;
    }
}

const SPEC = "gongkai-draw/1";
const MAX_SAFE_EXCLUSIVE = 2 ** 53;
const MAX_CHOICES = 8;

// ---------------------------------------------------------------------------------------
// Parsing. A strict JSON reader driven by the file's schema, checking each value as it is
// read, in document order, as serde does for the Rust verifier: the first problem in the
// file is the one reported, and it is attributed by where it is (inside `leaves`: leaves;
// inside the announcement: announcement; anything else: format), as verify.rs does with
// serde_path_to_error. Refused like the CLI: unknown, missing and repeated fields,
// numbers with a sign, fraction or exponent, integers >= 2^53, uppercase hex, lone
// surrogates, trailing data.

class ParseError extends Error {
    constructor(path, message) {
        super(message);
        this.path = path;
    }
}

function attribute(error) {
    const path = error.path === "" ? "." : error.path;
    let check = "format";
    if (path.startsWith("transcript.leaves")) check = "leaves";
    else if (path.startsWith("transcript.announcement.")) check = "announcement";
    return new CheckFailure(check, `at ${path}: ${error.message}`);
}

const join = (path, key) => (path === "" ? key : `${path}.${key}`);

class Reader {
    constructor(text, onProgress) {
        this.s = text;
        this.i = 0;
        this.onProgress = onProgress;
        this.nextReport = 1 << 22;
    }

    ws() {
        const s = this.s;
        let i = this.i;
        for (;;) {
            const c = s.charCodeAt(i);
            if (c === 32 || c === 10 || c === 13 || c === 9) i++;
            else break;
        }
        this.i = i;
    }

    fail(path, message) {
        throw new ParseError(path, message);
    }

    peek() {
        this.ws();
        return this.i < this.s.length ? this.s[this.i] : "";
    }

    found() {
        const c = this.peek();
        if (c === "") return "end of file";
        if (c === '"') return "a string";
        if (c === "{") return "an object";
        if (c === "[") return "an array";
        if (c === "n") return "null";
        if (c === "t" || c === "f") return "a boolean";
        if (c === "-" || (c >= "0" && c <= "9")) return "a number";
        return "an invalid character";
    }

    string(path) {
        if (this.peek() !== '"') this.fail(path, `expected a string, found ${this.found()}`);
        const s = this.s;
        let i = this.i + 1;
        let out = "";
        let start = i;
        for (;;) {
            if (i >= s.length) this.fail(path, "end of file inside a string");
            const c = s.charCodeAt(i);
            if (c === 34) break;
            if (c < 0x20) this.fail(path, "control character in a string");
            if (c === 92) {
                out += s.slice(start, i);
                const e = s[i + 1];
                i += 2;
                if (e === "u") {
                    let unit = this.hex4(path, i);
                    i += 4;
                    if (unit >= 0xd800 && unit <= 0xdbff) {
                        if (s[i] !== "\\" || s[i + 1] !== "u") this.fail(path, "lone leading surrogate in hex escape");
                        const low = this.hex4(path, i + 2);
                        if (low < 0xdc00 || low > 0xdfff) this.fail(path, "lone leading surrogate in hex escape");
                        i += 6;
                        out += String.fromCharCode(unit, low);
                    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
                        this.fail(path, "lone trailing surrogate in hex escape");
                    } else {
                        out += String.fromCharCode(unit);
                    }
                } else {
                    const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
                    if (simple === undefined) this.fail(path, "invalid escape");
                    out += simple;
                }
                start = i;
                continue;
            }
            i++;
        }
        out += s.slice(start, i);
        this.i = i + 1;
        if (this.onProgress && this.i > this.nextReport) {
            this.nextReport = this.i + (1 << 22);
            this.onProgress(this.i / s.length);
        }
        return out;
    }

    hex4(path, at) {
        const t = this.s.slice(at, at + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(t)) this.fail(path, "invalid \\u escape");
        return parseInt(t, 16);
    }

    /// A JSON number read as u64 (as serde reads it): digits only, below 2^64; then below 2^53.
    safeU64(path) {
        this.ws();
        const s = this.s;
        const start = this.i;
        const m = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
        m.lastIndex = start;
        const match = m.exec(s);
        if (!match || match[0] === "-" || match[0] === "") {
            this.fail(path, `expected an integer, found ${this.found()}`);
        }
        const token = match[0];
        const next = s.charCodeAt(start + token.length);
        if (next >= 48 && next <= 57) this.fail(path, "invalid number");
        this.i = start + token.length;
        if (token.startsWith("-") || match[2] !== undefined || match[3] !== undefined) {
            this.fail(path, `invalid type: ${token} is not a whole number of the form 123`);
        }
        if (token.length > 16 && BigInt(token) >= 1n << 64n) {
            this.fail(path, `invalid type: ${token} is too large`);
        }
        const value = Number(token);
        if (value >= MAX_SAFE_EXCLUSIVE) this.fail(path, "integer must be below 2^53");
        return value;
    }

    nullOr(path, read) {
        if (this.peek() === "n") {
            if (this.s.startsWith("null", this.i)) {
                this.i += 4;
                return null;
            }
            this.fail(path, "invalid literal");
        }
        return read(path);
    }

    array(path, element) {
        if (this.peek() !== "[") this.fail(path, `expected an array, found ${this.found()}`);
        this.i++;
        const out = [];
        if (this.peek() === "]") {
            this.i++;
            return out;
        }
        for (;;) {
            out.push(element(`${path}[${out.length}]`));
            const c = this.peek();
            if (c === ",") {
                this.i++;
                if (this.peek() === "]") this.fail(path, "trailing comma");
            } else if (c === "]") {
                this.i++;
                return out;
            } else {
                this.fail(path, "expected `,` or `]`");
            }
        }
    }

    /// A struct: `fields` maps each key to its reader; unknown, repeated and missing
    /// fields are refused (serde's deny_unknown_fields).
    struct(path, fields) {
        if (this.peek() !== "{") this.fail(path, `expected an object, found ${this.found()}`);
        this.i++;
        const out = {};
        const seen = new Set();
        if (this.peek() === "}") {
            this.i++;
        } else {
            for (;;) {
                if (this.peek() !== '"') this.fail(join(path, "?"), "expected a key");
                const key = this.string(join(path, "?"));
                const read = Object.hasOwn(fields, key) ? fields[key] : undefined;
                if (read === undefined) {
                    const known = Object.keys(fields).map((k) => `\`${k}\``).join(", ");
                    this.fail(join(path, key), `unknown field \`${key}\`, expected one of ${known}`);
                }
                if (seen.has(key)) this.fail(path, `duplicate field \`${key}\``);
                seen.add(key);
                if (this.peek() !== ":") this.fail(path, "expected `:`");
                this.i++;
                out[key] = read(join(path, key));
                const c = this.peek();
                if (c === ",") {
                    this.i++;
                    if (this.peek() === "}") this.fail(join(path, "?"), "trailing comma");
                } else if (c === "}") {
                    this.i++;
                    break;
                } else {
                    this.fail(join(path, "?"), "expected `,` or `}`");
                }
            }
        }
        for (const key of Object.keys(fields)) {
            if (!seen.has(key)) this.fail(path, `missing field \`${key}\``);
        }
        return out;
    }
}

const APP_CODE = /^[0-9A-HJKMNP-TV-Z]{10}$/;
const CODE = /^[A-Za-z0-9-]{1,32}$/;
const DRAW_ID = /^[A-Za-z0-9-]{1,64}$/;

function isDrawTime(text) {
    const m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?Z$/.exec(text);
    if (!m) return false;
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
    const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
    if (days === undefined) return false;
    return day >= 1 && day <= days && hour <= 23 && minute <= 59 && second <= 60;
}

/// Parses the file's text. Throws CheckFailure.
export function parseSignedTranscript(text, onProgress) {
    const r = new Reader(text, onProgress);
    const str = (p) => r.string(p);
    const checked = (test, message) => (p) => {
        const value = r.string(p);
        if (!test(value)) r.fail(p, message);
        return value;
    };
    const hexBytes = (n) => (p) => {
        const value = r.string(p);
        try {
            fromHex(value, n);
        } catch (e) {
            r.fail(p, e.message);
        }
        return value;
    };
    const oneOf = (values) => (p) => {
        const value = r.string(p);
        if (!values.includes(value)) {
            r.fail(p, `unknown variant \`${value}\`, expected one of ${values.map((v) => `\`${v}\``).join(", ")}`);
        }
        return value;
    };
    const appCode = checked((v) => APP_CODE.test(v), "application code must be 10 characters from 0-9 and A-Z without I, L, O, U");
    const kgCode = checked((v) => CODE.test(v), "kindergarten code must be 1 to 32 characters from A-Z, a-z, 0-9 and '-'");
    const hex32 = hexBytes(32);
    const spec = checked((v) => v === SPEC, `unsupported spec, expected "${SPEC}"`);
    const u53 = (p) => r.safeU64(p);
    const signature = (p) =>
        r.struct(p, { role: oneOf(["organiser", "notary"]), public_key: hex32, signature: hexBytes(64) });
    const choice = (p) =>
        r.struct(p, {
            kg: kgCode,
            class: (q) => {
                const value = r.safeU64(q);
                if (value === 0) r.fail(q, "priority class must be an integer from 1 to 2^53-1, found 0");
                return value;
            },
        });
    const choices = (p) => {
        const list = r.array(p, choice);
        if (list.length === 0 || list.length > MAX_CHOICES) {
            r.fail(p, `an application has 1 to ${MAX_CHOICES} choices, found ${list.length}`);
        }
        for (let i = 0; i < list.length; i++) {
            for (let j = 0; j < i; j++) {
                if (list[j].kg === list[i].kg) r.fail(p, `kindergarten ${list[i].kg} is chosen twice`);
            }
        }
        return list;
    };
    const leaf = (p) => r.struct(p, { app: appCode, choices, group: str, idc: hex32 });
    const placement = (p) => r.struct(p, { kg: kgCode, units: (q) => r.array(q, appCode) });
    const announcement = (p) =>
        r.struct(p, {
            spec,
            draw_id: checked((v) => DRAW_ID.test(v), "draw id must be 1 to 64 characters from A-Z, a-z, 0-9 and '-'"),
            title: str,
            draw_time: checked(isDrawTime, "draw time must be an RFC 3339 UTC time ending in 'Z', e.g. 2026-06-18T09:30:00Z"),
            kindergartens: (q) => r.array(q, (k) => r.struct(k, { code: kgCode, name: str, seats: u53 })),
            mechanism: oneOf(["deferred-acceptance", "immediate-acceptance"]),
            multiples: oneOf(["whole-or-skip", "whole-or-overfill"]),
            applications: (q) => r.struct(q, { tree_size: u53, root: hex32 }),
            witnesses: (q) => r.array(q, (w) => r.struct(w, { name: str, role: str, commitment: hex32 })),
            beacon: (q) => r.nullOr(q, (b) => r.struct(b, { kind: oneOf(["public-text"]), source: str })),
        });
    const transcript = (p) =>
        r.struct(p, {
            spec,
            announcement,
            announcement_signatures: (q) => r.array(q, signature),
            leaves: (q) => r.array(q, leaf),
            reveals: (q) => r.array(q, hex32),
            beacon_text: (q) => r.nullOr(q, str),
            seed: hex32,
            lottery: (q) => r.array(q, appCode),
            admitted: (q) => r.array(q, placement),
            waitlists: (q) => r.array(q, placement),
        });
    try {
        const signed = r.struct("", { transcript, signatures: (q) => r.array(q, signature) });
        if (r.peek() !== "") r.fail("", "trailing characters after the JSON value");
        return signed;
    } catch (e) {
        if (e instanceof ParseError) throw attribute(e);
        throw e;
    }
}

// ---------------------------------------------------------------------------------------
// Verification

function fail(check, detail) {
    throw new CheckFailure(check, detail);
}

/// Code point order (Rust's `str` order), for group identifiers that may hold any text.
function compareCodePoints(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
        const x = a.codePointAt(i);
        const y = b.codePointAt(i);
        if (x !== y) return x - y;
        if (x > 0xffff) i++;
    }
    return a.length - b.length;
}

const jsonString = (s) => JSON.stringify(s);

/// The canonical JSON of a parsed leaf (its keys and their order are fixed by the schema).
function leafJson(leaf) {
    let choices = "";
    for (const c of leaf.choices) {
        choices += `${choices ? "," : ""}{"class":${c.class},"kg":"${c.kg}"}`;
    }
    return `{"app":"${leaf.app}","choices":[${choices}],"group":${jsonString(leaf.group)},"idc":"${leaf.idc}"}`;
}

function signatureJson(s) {
    return `{"public_key":"${s.public_key}","role":"${s.role}","signature":"${s.signature}"}`;
}

function placementsJson(list) {
    return `[${list.map((p) => `{"kg":"${p.kg}","units":[${p.units.map((u) => `"${u}"`).join(",")}]}`).join(",")}]`;
}

function announcementJson(a) {
    const kgs = a.kindergartens.map((k) => `{"code":"${k.code}","name":${jsonString(k.name)},"seats":${k.seats}}`);
    const witnesses = a.witnesses.map(
        (w) => `{"commitment":"${w.commitment}","name":${jsonString(w.name)},"role":${jsonString(w.role)}}`,
    );
    const beacon = a.beacon === null ? "null" : `{"kind":"public-text","source":${jsonString(a.beacon.source)}}`;
    return (
        `{"applications":{"root":"${a.applications.root}","tree_size":${a.applications.tree_size}},` +
        `"beacon":${beacon},"draw_id":"${a.draw_id}","draw_time":"${a.draw_time}",` +
        `"kindergartens":[${kgs.join(",")}],"mechanism":"${a.mechanism}","multiples":"${a.multiples}",` +
        `"spec":"${SPEC}","title":${jsonString(a.title)},"witnesses":[${witnesses.join(",")}]}`
    );
}

function message(name, hash) {
    const prefix = label(name);
    const out = new Uint8Array(prefix.length + 32);
    out.set(prefix);
    out.set(hash, prefix.length);
    return out;
}

function firstDifference(expected, found) {
    const n = Math.min(expected.length, found.length);
    for (let i = 0; i < n; i++) if (expected[i] !== found[i]) return i;
    return expected.length !== found.length ? n : -1;
}

function comparePlacements(check, expected, found) {
    if (expected.length !== found.length) {
        fail(check, `${expected.length} kindergartens expected, ${found.length} listed`);
    }
    for (let i = 0; i < expected.length; i++) {
        if (expected[i].kg !== found[i].kg) {
            fail(check, `expected kindergarten ${expected[i].kg}, found ${found[i].kg}`);
        }
        const position = firstDifference(expected[i].units, found[i].units);
        if (position >= 0) fail(check, `kindergarten ${expected[i].kg} differs at position ${position + 1}`);
    }
}

function decode(input) {
    if (typeof input === "string") return input;
    const bytes = input instanceof ArrayBuffer ? new Uint8Array(input) : input;
    try {
        return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
        fail("format", "the file is not UTF-8");
    }
}

function trustedKey(text, option) {
    if (text === undefined || text === null || text.trim() === "") return null;
    const value = text.trim();
    if (!/^[0-9a-fA-F]{64}$/.test(value)) throw new Error(`${option}: expected 64 hex digits`);
    return value.toLowerCase();
}

/// Verifies a signed transcript; never throws for a bad file (only for bad trusted keys).
export async function verifyTranscript(input, trusted = {}, onProgress = () => {}) {
    const keys = {
        organiser: trustedKey(trusted.organiserKey, "organiser key"),
        notary: trustedKey(trusted.notaryKey, "notary key"),
    };
    try {
        return { valid: true, summary: await run(input, keys, onProgress) };
    } catch (e) {
        if (!(e instanceof CheckFailure)) throw e;
        const title = CHECKS.find((c) => c.name === e.check)?.title ?? e.check;
        return { valid: false, check: e.check, title, detail: e.detail };
    }
}

async function run(input, trusted, progress) {
    progress("read", 0);
    const text = decode(input);
    progress("parse", 0);
    const signed = parseSignedTranscript(text, (f) => progress("parse", f));
    progress("parse", 1);
    const t = signed.transcript;
    const a = t.announcement;

    // Announcement: kindergartens ordered by unique code, then its signatures.
    progress("announcement", 0);
    for (let i = 0; i + 1 < a.kindergartens.length; i++) {
        const [x, y] = [a.kindergartens[i].code, a.kindergartens[i + 1].code];
        if (x >= y) {
            fail("announcement", `kindergartens must be ordered by code with no code twice: ${x} comes before ${y}`);
        }
    }
    const announcementCanonical = announcementJson(a);
    const announcementHash = sha256(utf8(announcementCanonical));
    if (!t.announcement_signatures.some((s) => s.role === "organiser")) {
        fail("organiser-signatures", "the announcement has no organiser signature");
    }
    for (const s of t.announcement_signatures) {
        if (!(await verifyEd25519(s.public_key, s.signature, message("announcement", announcementHash)))) {
            fail("signatures", `announcement signature by ${s.role} ${s.public_key}: the signature does not verify`);
        }
    }
    progress("announcement", 1);

    // Leaves: every choice names an announced kindergarten; ordered, unique; groups.
    const kgIndex = new Map(a.kindergartens.map((k, i) => [k.code, i]));
    const leaves = t.leaves;
    for (let i = 0; i < leaves.length; i++) {
        for (const c of leaves[i].choices) {
            if (!kgIndex.has(c.kg)) {
                fail("leaves", `leaves[${i}] (${leaves[i].app}) chooses ${c.kg}, which is not announced`);
            }
        }
    }
    for (let i = 0; i + 1 < leaves.length; i++) {
        if (leaves[i].app >= leaves[i + 1].app) {
            const problem = leaves[i].app === leaves[i + 1].app ? "appears twice" : "is out of order";
            fail("leaves", `leaves[${i + 1}] (${leaves[i + 1].app}) ${problem}`);
        }
    }
    const units = formUnits(leaves);

    // The leaf hashes and the transcript's canonical JSON in one pass: the transcript hash
    // is fed with the leaves' bytes as they are hashed.
    progress("leaves", 0);
    const transcriptHasher = new Sha256();
    transcriptHasher.update(
        utf8(
            `{"admitted":${placementsJson(t.admitted)},"announcement":${announcementCanonical},` +
            `"announcement_signatures":[${t.announcement_signatures.map(signatureJson).join(",")}],` +
            `"beacon_text":${t.beacon_text === null ? "null" : jsonString(t.beacon_text)},"leaves":[`,
        ),
    );
    const leafHashes = new Array(leaves.length);
    const zero = new Uint8Array([0]);
    const comma = new Uint8Array([44]);
    for (let i = 0; i < leaves.length; i++) {
        const bytes = utf8(leafJson(leaves[i]));
        leafHashes[i] = new Sha256().update(zero).update(bytes).digest();
        if (i > 0) transcriptHasher.update(comma);
        transcriptHasher.update(bytes);
        if (i % 16384 === 0) progress("leaves", i / leaves.length);
    }
    transcriptHasher.update(
        utf8(
            `],"lottery":[${t.lottery.map((u) => `"${u}"`).join(",")}],` +
            `"reveals":[${t.reveals.map((r) => `"${r}"`).join(",")}],"seed":"${t.seed}",` +
            `"spec":"${SPEC}","waitlists":${placementsJson(t.waitlists)}}`,
        ),
    );
    progress("leaves", 1);

    // Tree head.
    progress("merkle", 0);
    if (a.applications.tree_size !== leaves.length) {
        fail("tree-head", `the announcement commits to ${a.applications.tree_size} applications, the transcript has ${leaves.length}`);
    }
    const root = hex(merkleRoot(leafHashes, (f) => progress("merkle", f)));
    if (root !== a.applications.root) {
        fail("tree-head", `the leaves hash to root ${root}, the announcement says ${a.applications.root}`);
    }
    progress("merkle", 1);

    // Reveals, beacon and seed.
    progress("reveals", 0);
    if (t.reveals.length !== a.witnesses.length) {
        fail("reveals", `${a.witnesses.length} witnesses committed, ${t.reveals.length} secrets revealed`);
    }
    a.witnesses.forEach((w, i) => {
        if (hex(witnessCommitment(a.draw_id, t.reveals[i])) !== w.commitment) {
            fail("reveals", `the secret of witness ${JSON.stringify(w.name)} (${w.role}) does not match the commitment`);
        }
    });
    if (a.beacon !== null && t.beacon_text === null) {
        fail("seed", "the announcement names a beacon but beacon_text is null");
    }
    if (a.beacon === null && t.beacon_text !== null) {
        fail("seed", "beacon_text is given but the announcement names no beacon");
    }
    const seed = seedOf(announcementHash, t.beacon_text, t.reveals.map((r) => fromHex(r, 32)));
    if (hex(seed) !== t.seed) fail("seed", `the inputs give seed ${hex(seed)}, the transcript says ${t.seed}`);
    progress("reveals", 1);

    // Lottery.
    progress("lottery", 0);
    const order = lotteryOrder(seed, units.length, (f) => progress("lottery", f));
    const byLottery = Array.from(order, (initial) => units[initial]);
    const lottery = byLottery.map((u) => u.id);
    const position = firstDifference(lottery, t.lottery);
    if (position >= 0) fail("lottery", `lottery number ${position + 1} differs`);
    progress("lottery", 1);

    // Allocation and waitlists.
    progress("allocation", 0);
    const table = byLottery.map((u) => ({
        size: u.size,
        picks: leaves[u.leaf].choices.map((c) => ({ kg: kgIndex.get(c.kg), cls: c.class })),
    }));
    const seats = a.kindergartens.map((k) => k.seats);
    const allocation = allocate(table, seats, a.mechanism, a.multiples);
    const placements = (lists) =>
        a.kindergartens.map((k, g) => ({ kg: k.code, units: lists[g].map((u) => byLottery[u].id) }));
    progress("allocation", 1);
    progress("compare", 0);
    comparePlacements("admitted", placements(allocation.admitted), t.admitted);
    comparePlacements("waitlists", placements(allocation.waitlists), t.waitlists);
    progress("compare", 1);

    // The transcript's signatures, then the trusted keys.
    progress("signatures", 0);
    if (!signed.signatures.some((s) => s.role === "organiser")) {
        fail("organiser-signatures", "the transcript has no organiser signature");
    }
    const transcriptHash = transcriptHasher.digest();
    for (const s of signed.signatures) {
        if (!(await verifyEd25519(s.public_key, s.signature, message("transcript", transcriptHash)))) {
            fail("signatures", `transcript signature by ${s.role} ${s.public_key}: the signature does not verify`);
        }
    }
    for (const s of [...t.announcement_signatures, ...signed.signatures]) {
        const expected = trusted[s.role];
        if (expected !== null && expected !== s.public_key) {
            fail("trusted-keys", `a ${s.role} signature is by ${s.public_key}, not the trusted key`);
        }
    }
    if (trusted.notary !== null && !signed.signatures.some((s) => s.role === "notary" && s.public_key === trusted.notary)) {
        fail("trusted-keys", "the transcript has no signature by the trusted notary key");
    }
    progress("signatures", 1);

    let admittedUnits = 0;
    let admittedChildren = 0;
    for (const list of allocation.admitted) {
        admittedUnits += list.length;
        for (const u of list) admittedChildren += byLottery[u].size;
    }
    return {
        draw_id: a.draw_id,
        title: a.title,
        mechanism: a.mechanism,
        multiples: a.multiples,
        applications: leaves.length,
        units: units.length,
        kindergartens: a.kindergartens.length,
        seats: seats.reduce((x, y) => x + y, 0),
        admitted_units: admittedUnits,
        admitted_children: admittedChildren,
        seed: hex(seed),
        announcement_hash: hex(announcementHash),
        transcript_hash: hex(transcriptHash),
        signers: signed.signatures.map((s) => ({ role: s.role, public_key: s.public_key })),
    };
}

/// Units ordered by id: single applications, and groups with 2+ members and identical
/// choices (checked in the order of the group identifiers, as the Rust verifier does).
function formUnits(leaves) {
    const units = [];
    const grouped = new Map();
    for (let i = 0; i < leaves.length; i++) {
        const group = leaves[i].group;
        if (group === "") {
            units.push({ id: leaves[i].app, leaf: i, size: 1 });
        } else {
            let members = grouped.get(group);
            if (!members) grouped.set(group, (members = []));
            members.push(i);
        }
    }
    const names = [...grouped.keys()].sort(compareCodePoints);
    const sameChoices = (x, y) =>
        x.length === y.length && x.every((c, i) => c.kg === y[i].kg && c.class === y[i].class);
    for (const name of names) {
        const members = grouped.get(name);
        const first = leaves[members[0]];
        if (members.length < 2) {
            fail("groups", `group ${JSON.stringify(name)} has only one member (${first.app})`);
        }
        const other = members.find((m) => !sameChoices(leaves[m].choices, first.choices));
        if (other !== undefined) {
            fail("groups", `members ${first.app} and ${leaves[other].app} of group ${JSON.stringify(name)} have different choices`);
        }
        units.push({ id: first.app, leaf: members[0], size: members.length });
    }
    units.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    return units;
}
