// Unit tests of the in-browser verifier's JavaScript (web/assets/draw-*.js), run by
// ./test.sh with `node --test web/assets/tests/`. Not compiled into the binary.
//
// Vectors: RFC 8439 (ChaCha20), RFC 8785 (JCS), RFC 6962 / certificate-transparency
// (Merkle tree heads), RFC 8032 (Ed25519), the spec's lottery check value; and two small
// transcripts written by `gongkai draw simulate` (fixtures/), verified and tampered with.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createCipheriv, randomBytes } from "node:crypto";
import { test } from "node:test";

import {
    ChaChaStream, allocate, chacha20Block, fromHex, hex, isSmallOrderPoint, jcs, leafHash,
    lotteryOrder, merkleRoot, nodeHash, sha256, sha256WebCrypto, utf8, verifyEd25519,
    verifyInclusion,
} from "../draw-core.js";
import { CHECKS, verifyTranscript } from "../draw-verify.js";

const fixture = (name) => readFileSync(new URL(`fixtures/${name}`, import.meta.url), "utf8");

function blockBytes(words) {
    const out = new Uint8Array(64);
    const view = new DataView(out.buffer);
    words.forEach((w, i) => view.setUint32(4 * i, w, true));
    return out;
}

const RFC8439_KEY = Uint8Array.from({ length: 32 }, (_, i) => i);

test("ChaCha20 block function: RFC 8439 section 2.3.2", () => {
    // Nonce 00:00:00:09:00:00:00:4a:00:00:00:00 (96 bits) and block counter 1: state word
    // 12 is the counter, words 13-15 the nonce.
    const block = chacha20Block(RFC8439_KEY, [1, 0x09000000], [0x4a000000, 0]);
    assert.equal(
        hex(blockBytes(block)),
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e" +
            "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
    );
});

test("ChaCha20 keystream: RFC 8439 section 2.4.2 encryption", () => {
    const plaintext = utf8(
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    );
    const out = new Uint8Array(plaintext.length);
    for (let b = 0; b * 64 < plaintext.length; b++) {
        const ks = blockBytes(chacha20Block(RFC8439_KEY, [1 + b, 0], [0x4a000000, 0]));
        for (let i = 0; i < 64 && b * 64 + i < plaintext.length; i++) {
            out[b * 64 + i] = plaintext[b * 64 + i] ^ ks[i];
        }
    }
    assert.equal(
        hex(out),
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b" +
            "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8" +
            "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736" +
            "5af90bbf74a35be6b40b8eedf2785e42874d",
    );
});

test("the spec's stream: key 0 gives RFC 8439 appendix A.1 test vectors 1 and 2", () => {
    const stream = new ChaChaStream(new Uint8Array(32));
    const bytes = new Uint8Array(128);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < 16; i++) view.setBigUint64(8 * i, stream.next(), true);
    assert.equal(
        hex(bytes),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7" +
            "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586" +
            "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed" +
            "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f",
    );
});

test("the spec's stream agrees with OpenSSL's ChaCha20 over several blocks", () => {
    for (let round = 0; round < 5; round++) {
        const key = randomBytes(32);
        const expected = createCipheriv("chacha20", key, Buffer.alloc(16)).update(Buffer.alloc(64 * 5));
        const stream = new ChaChaStream(new Uint8Array(key));
        const got = new Uint8Array(64 * 5);
        const view = new DataView(got.buffer);
        for (let i = 0; i < 40; i++) view.setBigUint64(8 * i, stream.next(), true);
        assert.equal(hex(got), expected.toString("hex"));
    }
});

test("uniform(n) matches the spec's BigInt definition, rejection zone included", () => {
    const reference = (words, n) => {
        const N = BigInt(n);
        const zone = (1n << 64n) - ((1n << 64n) % N);
        for (const w of words) if (w < zone) return Number(w % N);
        return null;
    };
    const seed = sha256(utf8("uniform"));
    for (const n of [1, 2, 3, 7, 10, 1000, 65537, 999_999, 2 ** 31 + 11, 2 ** 32 - 1, 2 ** 32 + 3, 2 ** 40 + 1]) {
        const a = new ChaChaStream(seed);
        const b = new ChaChaStream(seed);
        for (let i = 0; i < 200; i++) {
            const words = [b.next()];
            let expected = reference(words, n);
            while (expected === null) {
                words.push(b.next());
                expected = reference(words.slice(-1), n);
            }
            assert.equal(a.uniform(n), expected, `n = ${n}`);
        }
    }
});

test("lottery: the spec's check value", () => {
    const seed = sha256(utf8("example seed"));
    assert.deepEqual(Array.from(lotteryOrder(seed, 10)), [3, 1, 0, 6, 7, 8, 9, 4, 5, 2]);
});

test("lottery orders are permutations", () => {
    for (let n = 0; n < 30; n++) {
        const order = Array.from(lotteryOrder(sha256(utf8("x")), n)).sort((a, b) => a - b);
        assert.deepEqual(order, Array.from({ length: n }, (_, i) => i));
    }
});

test("SHA-256: known values and agreement with WebCrypto", async () => {
    assert.equal(hex(sha256(new Uint8Array(0))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.equal(hex(sha256(utf8("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    for (const length of [1, 55, 56, 63, 64, 65, 119, 120, 1000, 100_000]) {
        const bytes = new Uint8Array(randomBytes(length));
        assert.equal(hex(sha256(bytes)), hex(await sha256WebCrypto(bytes)), `length ${length}`);
    }
});

test("JCS: RFC 8785 section 3.2.2 example", () => {
    const input = JSON.parse(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
            ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
            ' "literals": [null, true, false]}',
    );
    assert.equal(
        jcs(input),
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
            '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
});

test("JCS: RFC 8785 section 3.2.3 sorting by UTF-16 code units", () => {
    const input = JSON.parse(
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",' +
            ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",' +
            ' "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    );
    assert.equal(
        jcs(input),
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",' +
            '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",' +
            '"\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
});

// certificate-transparency's reference leaves and tree heads (RFC 6962 test data).
const CT_LEAVES = [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];
const ctLeafHash = (data) => sha256(Uint8Array.of(0, ...fromHex(data)));

test("Merkle tree hash: RFC 6962 reference roots, and H(\"\") for no leaves", () => {
    assert.equal(hex(merkleRoot([])), hex(sha256(new Uint8Array(0))));
    for (let n = 1; n <= CT_LEAVES.length; n++) {
        assert.equal(hex(merkleRoot(CT_LEAVES.slice(0, n).map(ctLeafHash))), CT_ROOTS[n - 1], `n = ${n}`);
    }
});

/// RFC 9162 section 2.1.3.1 audit paths, written from the recursive definition.
function recursiveRoot(hashes) {
    if (hashes.length === 1) return hashes[0];
    const k = 2 ** Math.floor(Math.log2(hashes.length - 1));
    return nodeHash(recursiveRoot(hashes.slice(0, k)), recursiveRoot(hashes.slice(k)));
}
function auditPath(index, hashes) {
    if (hashes.length <= 1) return [];
    const k = 2 ** Math.floor(Math.log2(hashes.length - 1));
    return index < k
        ? [...auditPath(index, hashes.slice(0, k)), recursiveRoot(hashes.slice(k))]
        : [...auditPath(index - k, hashes.slice(k)), recursiveRoot(hashes.slice(0, k))];
}

test("inclusion proofs: every proof verifies, no altered one does", () => {
    for (let size = 1; size <= 33; size++) {
        const hashes = Array.from({ length: size }, (_, i) => sha256(utf8(`leaf ${i}`)));
        const root = merkleRoot(hashes);
        assert.equal(hex(root), hex(recursiveRoot(hashes)));
        for (let i = 0; i < size; i++) {
            const path = auditPath(i, hashes).map(hex);
            // Exactly the shape of POST /api/v1/draws/{id}/proof: hex strings.
            assert.ok(verifyInclusion(hex(hashes[i]), i, size, path, hex(root)), `${i} of ${size}`);
            assert.ok(verifyInclusion(hashes[i], i, size, path, root));
            assert.ok(!verifyInclusion(hex(hashes[(i + 1) % size]), i, size, path, hex(root)) || size === 1);
            const bigger = merkleRoot([...hashes, sha256(utf8("one more"))]);
            assert.ok(!verifyInclusion(hex(hashes[i]), i, size + 1, path, hex(bigger)));
            if (path.length > 0) {
                assert.ok(!verifyInclusion(hex(hashes[i]), i, size, path.slice(1), hex(root)));
                assert.ok(!verifyInclusion(hex(hashes[i]), i, size, [...path, path[0]], hex(root)));
            }
        }
        assert.ok(!verifyInclusion(hex(hashes[0]), size, size, [], hex(root)));
        assert.ok(!verifyInclusion(hex(hashes[0]), -1, size, [], hex(root)));
    }
    assert.ok(!verifyInclusion("zz", 0, 1, [], "00"));
});

test("leafHash is H(0x00 || JCS(leaf)) whatever the key order of the object", () => {
    const leaf = {
        idc: "aa".repeat(32), group: "", choices: [{ kg: "KG-01", class: 1 }], app: "0123456789",
    };
    const canonical = '{"app":"0123456789","choices":[{"class":1,"kg":"KG-01"}],"group":"","idc":"' + "aa".repeat(32) + '"}';
    assert.equal(jcs(leaf), canonical);
    assert.equal(hex(leafHash(leaf)), hex(sha256(Uint8Array.of(0, ...utf8(canonical)))));
});

test("Ed25519: RFC 8032 test vector 1, and strictness", async () => {
    const publicKey = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const signature =
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    assert.equal(await verifyEd25519(publicKey, signature, new Uint8Array(0)), true);
    assert.equal(await verifyEd25519(publicKey, signature, Uint8Array.of(0)), false);
    const flipped = fromHex(signature, 64);
    flipped[10] ^= 1;
    assert.equal(await verifyEd25519(publicKey, flipped, new Uint8Array(0)), false);
    // The identity as public key with an all-zero-ish signature passes lax verification
    // for every message; strict verification refuses it.
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const forged = new Uint8Array(64);
    forged[0] = 1;
    assert.equal(await verifyEd25519(identity, forged, utf8("z")), false);
    assert.ok(isSmallOrderPoint(identity));
    assert.ok(!isSmallOrderPoint(fromHex(publicKey, 32)));
});

test("allocation: the Rust unit tests' cases", () => {
    const units = (list) => list.map(([size, picks]) => ({ size, picks: picks.map(([kg, cls]) => ({ kg, cls })) }));
    const twins = units([[1, [[0, 1]]], [2, [[0, 1]]], [1, [[0, 1]]], [1, [[0, 1]]]]);
    for (const mechanism of ["deferred-acceptance", "immediate-acceptance"]) {
        const skip = allocate(twins, [2], mechanism, "whole-or-skip");
        assert.deepEqual(skip.admitted, [[0, 2]]);
        assert.deepEqual(skip.waitlists, [[1, 3]]);
        const overfill = allocate(twins, [2], mechanism, "whole-or-overfill");
        assert.deepEqual(overfill.admitted, [[0, 1]]);
        assert.deepEqual(overfill.waitlists, [[2, 3]]);
    }
    const list = units([[1, [[1, 2], [0, 1]]], [1, [[0, 2], [1, 1]]], [1, [[0, 1]]]]);
    const da = allocate(list, [1, 1], "deferred-acceptance", "whole-or-skip");
    assert.deepEqual(da.admitted, [[0], [1]]);
    assert.deepEqual(da.placed, [1, 1, null]);
    assert.deepEqual(da.waitlists, [[2, 1], [0]]);
    const ia = allocate(list, [1, 1], "immediate-acceptance", "whole-or-skip");
    assert.deepEqual(ia.admitted, [[2], [0]]);
    assert.deepEqual(ia.placed, [0, null, 0]);
    assert.deepEqual(ia.waitlists, [[1], [1]]);
    const big = units([[1, [[0, 1]]], [3, [[0, 1]]], [1, [[0, 1]]]]);
    assert.deepEqual(allocate(big, [3], "deferred-acceptance", "whole-or-overfill").admitted, [[0, 1]]);
    assert.deepEqual(allocate(big, [3], "deferred-acceptance", "whole-or-skip").admitted, [[0, 2]]);
});

test("the check names are the CLI's, in its order", () => {
    assert.deepEqual(CHECKS.map((c) => c.name), [
        "format", "announcement", "leaves", "groups", "tree-head", "reveals", "seed", "lottery",
        "admitted", "waitlists", "organiser-signatures", "signatures", "trusted-keys",
    ]);
});

// Transcripts written by `gongkai draw simulate --applications 40 --kindergartens 3
// --multiples-per-mille 300 --beacon "fixture beacon"`, with both mechanisms and rules.
for (const name of ["da-overfill.json", "ia-skip.json"]) {
    test(`${name}: verifies, and each tampering is named by the CLI's check`, async () => {
        const text = fixture(name);
        const valid = await verifyTranscript(text);
        assert.equal(valid.valid, true, JSON.stringify(valid));
        assert.equal(valid.summary.applications, 40);
        // Any JSON spelling of the same values verifies (hashes are over the canonical form).
        const pretty = await verifyTranscript(JSON.stringify(JSON.parse(text), null, 2));
        assert.equal(pretty.valid, true);
        assert.equal(pretty.summary.transcript_hash, valid.summary.transcript_hash);
        // The leaf writer used for speed agrees with the generic JCS.
        const doc = JSON.parse(text);
        assert.equal(
            hex(merkleRoot(doc.transcript.leaves.map(leafHash))),
            doc.transcript.announcement.applications.root,
        );

        const cases = [
            ["format", (d) => { d.extra = 1; }],
            ["format", (d) => { d.transcript.seed = 5; }],
            ["announcement", (d) => { d.transcript.announcement.draw_time = "2026-02-30T00:00:00Z"; }],
            ["announcement", (d) => { d.transcript.announcement.kindergartens.reverse(); }],
            ["signatures", (d) => { d.transcript.announcement.title += "!"; }],
            ["organiser-signatures", (d) => { d.transcript.announcement_signatures = []; }],
            ["leaves", (d) => { d.transcript.leaves.reverse(); }],
            ["leaves", (d) => { d.transcript.leaves[0].choices[0].class = 1.5; }],
            ["leaves", (d) => { d.transcript.leaves[0].idc = d.transcript.leaves[0].idc.toUpperCase(); }],
            ["groups", (d) => {
                const member = d.transcript.leaves.find((l) => l.group !== "");
                member.choices[0].class += 1;
            }],
            ["tree-head", (d) => { d.transcript.leaves[3].idc = "00".repeat(32); }],
            ["reveals", (d) => { d.transcript.reveals[0] = "11".repeat(32); }],
            ["seed", (d) => { d.transcript.beacon_text += " "; }],
            ["seed", (d) => { d.transcript.seed = "22".repeat(32); }],
            ["lottery", (d) => { d.transcript.lottery.reverse(); }],
            ["admitted", (d) => { d.transcript.admitted[0].units.reverse(); }],
            ["waitlists", (d) => { d.transcript.waitlists[0].units.pop(); }],
            ["organiser-signatures", (d) => { d.signatures = []; }],
            ["signatures", (d) => {
                const s = d.signatures[0].signature;
                d.signatures[0].signature = (s[0] === "0" ? "1" : "0") + s.slice(1);
            }],
        ];
        for (const [check, tamper] of cases) {
            const copy = JSON.parse(text);
            tamper(copy);
            const outcome = await verifyTranscript(JSON.stringify(copy));
            assert.equal(outcome.valid, false, `${check}: ${tamper}`);
            assert.equal(outcome.check, check, `${tamper}: ${outcome.detail}`);
        }
        // Raw text the JSON round trip cannot express.
        const raw = [
            ["format", text + "x"],
            ["format", "\ufeff" + text],
            ["leaves", text.replace('"choices":[{"class":1', '"choices":[{"class":1.0')],
            ["format", text.replace('"seed":', '"seed":"00","seed":')],
        ];
        for (const [check, variant] of raw) {
            assert.notEqual(variant, text);
            const outcome = await verifyTranscript(variant);
            assert.equal(outcome.check, check, outcome.detail);
        }

        // Trusted keys.
        const organiser = doc.signatures.find((s) => s.role === "organiser").public_key;
        assert.equal((await verifyTranscript(text, { organiserKey: organiser })).valid, true);
        const wrong = await verifyTranscript(text, { organiserKey: "ab".repeat(32) });
        assert.equal(wrong.check, "trusted-keys");
        const notary = await verifyTranscript(text, { notaryKey: "ab".repeat(32) });
        assert.equal(notary.check, "trusted-keys");
    });
}
