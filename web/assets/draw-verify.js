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
    Sha256, allocate, fromHex, hex, label, lotteryOrder, merkleRootFlat,
    seedOf, sha256, sha256Into, utf8, verifyEd25519, witnessCommitment,
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
    const path = error.path;
    let check = "format";
    if (path.startsWith("transcript.leaves")) check = "leaves";
    else if (path.startsWith("transcript.announcement.")) check = "announcement";
    return new CheckFailure(check, `at ${path}: ${error.message}`);
}

/// A JSON reader over the file's text. The path of the value being read is kept as a stack
/// of keys and indices, and only turned into text (as serde_path_to_error writes it:
/// `transcript.leaves[3].app`, `.` for the root) when something fails.
class Reader {
    constructor(text, onProgress) {
        this.s = text;
        this.i = 0;
        this.stack = [];
        this.onProgress = onProgress;
        this.nextReport = 1 << 22;
    }

    path() {
        if (this.stack.length === 0) return ".";
        let out = "";
        for (const segment of this.stack) {
            if (typeof segment === "number") out += `[${segment}]`;
            else out += out === "" ? segment : `.${segment}`;
        }
        return out;
    }

    fail(message) {
        throw new ParseError(this.path(), message);
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

    peek() {
        this.ws();
        return this.i < this.s.length ? this.s.charCodeAt(this.i) : -1;
    }

    found() {
        const c = this.peek();
        if (c === -1) return "end of file";
        if (c === 34) return "a string";
        if (c === 123) return "an object";
        if (c === 91) return "an array";
        if (c === 110) return "null";
        if (c === 116 || c === 102) return "a boolean";
        if (c === 45 || (c >= 48 && c <= 57)) return "a number";
        return "an invalid character";
    }

    string() {
        if (this.peek() !== 34) this.fail(`expected a string, found ${this.found()}`);
        const s = this.s;
        let i = this.i + 1;
        let out = "";
        let start = i;
        for (;;) {
            if (i >= s.length) this.fail("end of file inside a string");
            const c = s.charCodeAt(i);
            if (c === 34) break;
            if (c < 0x20) this.fail("control character in a string");
            if (c === 92) {
                out += s.slice(start, i);
                const e = s[i + 1];
                i += 2;
                if (e === "u") {
                    const unit = this.hex4(i);
                    i += 4;
                    if (unit >= 0xd800 && unit <= 0xdbff) {
                        if (s[i] !== "\\" || s[i + 1] !== "u") this.fail("lone leading surrogate in hex escape");
                        const low = this.hex4(i + 2);
                        if (low < 0xdc00 || low > 0xdfff) this.fail("lone leading surrogate in hex escape");
                        i += 6;
                        out += String.fromCharCode(unit, low);
                    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
                        this.fail("lone trailing surrogate in hex escape");
                    } else {
                        out += String.fromCharCode(unit);
                    }
                } else {
                    const simple = ESCAPES[e];
                    if (simple === undefined) this.fail("invalid escape");
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

    hex4(at) {
        const t = this.s.slice(at, at + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(t)) this.fail("invalid \\u escape");
        return parseInt(t, 16);
    }

    /// A JSON number read as serde reads a u64 (digits only: no sign, fraction or
    /// exponent; below 2^64), then refused at 2^53 or above.
    safeU64() {
        this.ws();
        const s = this.s;
        const start = this.i;
        const c = s.charCodeAt(start);
        if (c === 45 || (c >= 48 && c <= 57)) {
            // Scan the whole JSON number token first, so that a malformed one is a syntax
            // error and a well-formed non-integer an "invalid type", as in serde_json.
            const m = NUMBER.exec(s.slice(start, start + 400));
            if (!m) this.fail("invalid number");
            const token = m[0];
            const next = s.charCodeAt(start + token.length);
            if (next >= 48 && next <= 57) this.fail("invalid number");
            this.i = start + token.length;
            if (c === 45 || m[2] !== undefined || m[3] !== undefined) {
                this.fail(`invalid type: ${token} is not a whole number of the form 123`);
            }
            if (token.length > 16 && BigInt(token) >= 1n << 64n) {
                this.fail(`invalid type: ${token} is too large`);
            }
            const value = Number(token);
            if (value >= MAX_SAFE_EXCLUSIVE) this.fail("integer must be below 2^53");
            return value;
        }
        return this.fail(`expected an integer, found ${this.found()}`);
    }

    nullOr(read) {
        if (this.peek() === 110) {
            if (this.s.startsWith("null", this.i)) {
                this.i += 4;
                return null;
            }
            this.fail("invalid literal");
        }
        return read();
    }

    array(element) {
        if (this.peek() !== 91) this.fail(`expected an array, found ${this.found()}`);
        this.i++;
        const out = [];
        if (this.peek() === 93) {
            this.i++;
            return out;
        }
        const stack = this.stack;
        for (;;) {
            stack.push(out.length);
            out.push(element());
            stack.pop();
            const c = this.peek();
            if (c === 44) {
                this.i++;
                if (this.peek() === 93) this.fail("trailing comma");
            } else if (c === 93) {
                this.i++;
                return out;
            } else {
                this.fail("expected `,` or `]`");
            }
        }
    }

    /// A struct: `shape.fields` maps each key to its reader; unknown, repeated and missing
    /// fields are refused (serde's deny_unknown_fields).
    struct(shape) {
        if (this.peek() !== 123) this.fail(`expected an object, found ${this.found()}`);
        this.i++;
        const out = {};
        let seen = 0;
        const stack = this.stack;
        if (this.peek() === 125) {
            this.i++;
        } else {
            for (;;) {
                stack.push("?");
                if (this.peek() !== 34) this.fail("expected a key");
                const key = this.string();
                stack.pop();
                const index = shape.index.get(key);
                if (index === undefined) {
                    stack.push(key);
                    const known = shape.keys.map((k) => `\`${k}\``).join(", ");
                    this.fail(`unknown field \`${key}\`, expected one of ${known}`);
                }
                if (seen & (1 << index)) this.fail(`duplicate field \`${key}\``);
                seen |= 1 << index;
                if (this.peek() !== 58) this.fail("expected `:`");
                this.i++;
                stack.push(key);
                out[key] = shape.readers[index]();
                stack.pop();
                const c = this.peek();
                if (c === 44) {
                    this.i++;
                    if (this.peek() === 125) {
                        stack.push("?");
                        this.fail("trailing comma");
                    }
                } else if (c === 125) {
                    this.i++;
                    break;
                } else {
                    stack.push("?");
                    this.fail("expected `,` or `}`");
                }
            }
        }
        if (seen !== shape.all) {
            const missing = shape.keys.find((_, i) => !(seen & (1 << i)));
            this.fail(`missing field \`${missing}\``);
        }
        return out;
    }
}

/// The fields of a struct, in declaration order (the order serde reports missing ones).
function shape(fields) {
    const keys = Object.keys(fields);
    return {
        keys,
        readers: keys.map((k) => fields[k]),
        index: new Map(keys.map((k, i) => [k, i])),
        all: (1 << keys.length) - 1,
    };
}

const ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
const NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/;
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
    const str = () => r.string();
    const checked = (test, message) => () => {
        const value = r.string();
        if (!test(value)) r.fail(message);
        return value;
    };
    const hexBytes = (n) => () => {
        const value = r.string();
        if (value.length !== 2 * n) r.fail(`expected ${2 * n} hex digits, found ${value.length}`);
        if (!LOWER_HEX.test(value)) r.fail("expected lowercase hex digits (0-9, a-f)");
        return value;
    };
    const oneOf = (values) => () => {
        const value = r.string();
        if (!values.includes(value)) {
            r.fail(`unknown variant \`${value}\`, expected one of ${values.map((v) => `\`${v}\``).join(", ")}`);
        }
        return value;
    };
    const appCode = checked((v) => APP_CODE.test(v), "application code must be 10 characters from 0-9 and A-Z without I, L, O, U");
    const kgCode = checked((v) => CODE.test(v), "kindergarten code must be 1 to 32 characters from A-Z, a-z, 0-9 and '-'");
    const hex32 = hexBytes(32);
    const spec = checked((v) => v === SPEC, `unsupported spec, expected "${SPEC}"`);
    const u53 = () => r.safeU64();
    const signatureFields = { role: oneOf(["organiser", "notary"]), public_key: hex32, signature: hexBytes(64) };
    const signatureShape = shape(signatureFields);
    const signature = () => r.struct(signatureShape);
    const choiceFields = {
        kg: kgCode,
        class: () => {
            const value = r.safeU64();
            if (value === 0) r.fail("priority class must be an integer from 1 to 2^53-1, found 0");
            return value;
        },
    };
    const choiceShape = shape(choiceFields);
    const choice = () => r.struct(choiceShape);
    const choices = () => {
        const list = r.array(choice);
        if (list.length === 0 || list.length > MAX_CHOICES) {
            r.fail(`an application has 1 to ${MAX_CHOICES} choices, found ${list.length}`);
        }
        for (let i = 1; i < list.length; i++) {
            for (let j = 0; j < i; j++) {
                if (list[j].kg === list[i].kg) r.fail(`kindergarten ${list[i].kg} is chosen twice`);
            }
        }
        return list;
    };
    const leafFields = { app: appCode, choices, group: str, idc: hex32 };
    const leafShape = shape(leafFields);
    const leaf = () => r.struct(leafShape);
    const placementFields = { kg: kgCode, units: () => r.array(appCode) };
    const placementShape = shape(placementFields);
    const placement = () => r.struct(placementShape);
    const announcement = () =>
        r.struct(shape({
            spec,
            draw_id: checked((v) => DRAW_ID.test(v), "draw id must be 1 to 64 characters from A-Z, a-z, 0-9 and '-'"),
            title: str,
            draw_time: checked(isDrawTime, "draw time must be an RFC 3339 UTC time ending in 'Z', e.g. 2026-06-18T09:30:00Z"),
            kindergartens: () => r.array(() => r.struct(shape({ code: kgCode, name: str, seats: u53 }))),
            mechanism: oneOf(["deferred-acceptance", "immediate-acceptance"]),
            multiples: oneOf(["whole-or-skip", "whole-or-overfill"]),
            applications: () => r.struct(shape({ tree_size: u53, root: hex32 })),
            witnesses: () => r.array(() => r.struct(shape({ name: str, role: str, commitment: hex32 }))),
            beacon: () => r.nullOr(() => r.struct(shape({ kind: oneOf(["public-text"]), source: str }))),
        }));
    const transcript = () =>
        r.struct(shape({
            spec,
            announcement,
            announcement_signatures: () => r.array(signature),
            leaves: () => r.array(leaf),
            reveals: () => r.array(hex32),
            beacon_text: () => r.nullOr(str),
            seed: hex32,
            lottery: () => r.array(appCode),
            admitted: () => r.array(placement),
            waitlists: () => r.array(placement),
        }));
    try {
        const signed = r.struct(shape({ transcript, signatures: () => r.array(signature) }));
        if (r.peek() !== -1) r.fail("trailing characters after the JSON value");
        return signed;
    } catch (e) {
        if (e instanceof ParseError) throw attribute(e);
        throw e;
    }
}

const LOWER_HEX = /^[0-9a-f]*$/;

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
    // Each leaf's canonical JSON goes once into a scratch buffer after a 0x00 byte: the
    // leaf hash is over buffer[0..], the transcript hash takes buffer[1..].
    const leafHashes = new Uint8Array(32 * leaves.length);
    const encoder = new TextEncoder();
    let scratch = new Uint8Array(4096);
    const comma = new Uint8Array([44]);
    for (let i = 0; i < leaves.length; i++) {
        const json = leafJson(leaves[i]);
        if (3 * json.length + 1 > scratch.length) scratch = new Uint8Array(3 * json.length + 1);
        const { written } = encoder.encodeInto(json, scratch.subarray(1));
        sha256Into(scratch, 0, written + 1, leafHashes, 32 * i);
        if (i > 0) transcriptHasher.update(comma);
        transcriptHasher.update(scratch, 1, written + 1);
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
    const root = hex(merkleRootFlat(leafHashes, leaves.length, (f) => progress("merkle", f)));
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
    const allocation = allocate(table, seats, a.mechanism, a.multiples, (f) => progress("allocation", f));
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
