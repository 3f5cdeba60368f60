// verify-worker.js: runs draw-verify.js off the page's main thread, so that a transcript
// of a million leaves neither freezes the page nor stops its progress bar.
//
// Messages in:  {bytes: ArrayBuffer, trusted: {organiserKey, notaryKey}}
// Messages out: {type: "progress", stage, fraction}
//               {type: "result", result}   (what verifyTranscript resolves to)
//               {type: "error", message}   (a bug or an unusable browser, not a bad file)

import { sha256, sha256WebCrypto, equalBytes } from "./draw-core.js";
import { verifyTranscript } from "./draw-verify.js";

/// The JavaScript SHA-256 that hashes the leaves must agree with the browser's own.
async function selfCheck(bytes) {
    const sample = bytes.subarray(0, Math.min(bytes.length, 1 << 20));
    if (!equalBytes(sha256(sample), await sha256WebCrypto(sample))) {
        throw new Error("SHA-256 self-check against WebCrypto failed");
    }
}

self.onmessage = async (event) => {
    const { bytes, trusted } = event.data;
    let last = 0;
    const progress = (stage, fraction) => {
        const now = Date.now();
        if (fraction === 0 || fraction === 1 || now - last > 100) {
            last = now;
            self.postMessage({ type: "progress", stage, fraction });
        }
    };
    try {
        const view = new Uint8Array(bytes);
        await selfCheck(view);
        const result = await verifyTranscript(view, trusted, progress);
        self.postMessage({ type: "result", result });
    } catch (error) {
        self.postMessage({ type: "error", message: String(error && error.message ? error.message : error) });
    }
};
