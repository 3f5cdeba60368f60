// verify-page.js: the /verify page. Loads a signed transcript (a file the visitor picks,
// or with ?draw=ID the draw's published transcript from /api/v1/draws/{ID}/transcript),
// verifies it in a Worker (verify-worker.js) and shows progress, then either the summary
// `gongkai draw verify` prints or the check that failed, by the CLI's short name.
//
// For tests and scripts the outcome is also in attributes: #verify-result[data-state] is
// "running", "valid", "invalid" or "error"; #verify-check[data-check] the failed check.

const $ = (id) => document.getElementById(id);
const text = $("verify-i18n").dataset;
const form = $("verify-form");
const fileInput = $("transcript-file");
const again = $("verify-again");
const status = $("verify-status");
const bar = $("verify-progress");
const stageLabel = $("verify-stage");
const result = $("verify-result");

// The stages in order, each with its rough share of the time on a large transcript.
const STAGES = [["read", 2], ["parse", 25], ["announcement", 1], ["leaves", 20], ["merkle", 5],
    ["reveals", 1], ["lottery", 5], ["allocation", 36], ["compare", 3], ["signatures", 2]];
const TOTAL_WEIGHT = STAGES.reduce((sum, [, weight]) => sum + weight, 0);

let current = null; // {load: () => Promise<ArrayBuffer>} of the last transcript chosen
let worker = null;

function camel(name) {
    return name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
}

function format(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, key) => String(values[key] ?? ""));
}

function showProgress(stage, fraction) {
    // Overall percentage: the stages before this one, and this one by its fraction.
    let before = 0;
    let weight = 0;
    for (const [name, share] of STAGES) {
        if (name === stage) {
            weight = share;
            break;
        }
        before += share;
    }
    const percent = Math.min(100, Math.floor(((before + weight * fraction) / TOTAL_WEIGHT) * 100));
    status.hidden = false;
    bar.value = percent;
    stageLabel.textContent = `${text[camel(`stage-${stage}`)] ?? stage} · ${percent}%`;
    stageLabel.dataset.stage = stage;
}

function clearResult(state) {
    result.hidden = state === "running";
    result.dataset.state = state;
    $("verify-verdict").textContent = "";
    $("verify-check").textContent = "";
    $("verify-check").dataset.check = "";
    $("verify-detail").textContent = "";
    $("verify-summary").replaceChildren();
}

function showError(message) {
    status.hidden = true;
    clearResult("error");
    result.hidden = false;
    $("verify-verdict").textContent = text.error;
    $("verify-detail").textContent = message;
}

function summaryRow(term, value, mono) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (mono) {
        const code = document.createElement("code");
        code.textContent = value;
        dd.append(code);
    } else {
        dd.textContent = value;
    }
    $("verify-summary").append(dt, dd);
}

function showResult(outcome) {
    status.hidden = false;
    bar.value = 100;
    clearResult(outcome.valid ? "valid" : "invalid");
    result.hidden = false;
    if (outcome.valid) {
        const s = outcome.summary;
        $("verify-verdict").textContent = text.valid;
        summaryRow(text.sumDraw, s.draw_id, true);
        summaryRow(text.sumTitle, s.title);
        summaryRow(text.sumMechanism, `${s.mechanism}, ${s.multiples}`, true);
        summaryRow(text.sumApplications, String(s.applications));
        summaryRow(text.sumUnits, String(s.units));
        summaryRow(text.sumKindergartens, String(s.kindergartens));
        summaryRow(text.sumSeats, String(s.seats));
        summaryRow(text.sumAdmitted, format(text.sumAdmittedValue, {
            children: s.admitted_children, units: s.admitted_units,
        }));
        summaryRow(text.sumSeed, s.seed, true);
        summaryRow(text.sumAnnouncement, s.announcement_hash, true);
        summaryRow(text.sumTranscriptHash, s.transcript_hash, true);
        for (const signer of s.signers) summaryRow(text.sumSignedBy, `${signer.role} ${signer.public_key}`, true);
        $("verify-summary").dataset.transcriptHash = s.transcript_hash;
    } else {
        $("verify-verdict").textContent = text.invalid;
        const check = $("verify-check");
        check.dataset.check = outcome.check;
        const label = text[camel(`check-${outcome.check}`)] ?? outcome.title;
        check.textContent = format(text.failedCheck, { check: label, name: outcome.check });
        $("verify-detail").textContent = outcome.detail;
    }
}

function trustedKeys() {
    const keys = {};
    for (const [id, field] of [["organiser-key", "organiserKey"], ["notary-key", "notaryKey"]]) {
        const value = $(id).value.trim();
        if (value !== "" && !/^[0-9a-fA-F]{64}$/.test(value)) return null;
        keys[field] = value;
    }
    return keys;
}

async function verify() {
    if (!current) return;
    const trusted = trustedKeys();
    if (trusted === null) {
        showError(text.badKey);
        return;
    }
    if (worker) worker.terminate();
    clearResult("running");
    again.disabled = true;
    showProgress("read", 0);
    let bytes;
    try {
        bytes = await current.load();
    } catch (error) {
        again.disabled = false;
        showError(error.message);
        return;
    }
    worker = new Worker("/assets/verify-worker.js", { type: "module" });
    const done = () => {
        worker.terminate();
        worker = null;
        again.disabled = false;
    };
    worker.onmessage = (event) => {
        const message = event.data;
        if (message.type === "progress") {
            showProgress(message.stage, message.fraction);
        } else if (message.type === "result") {
            done();
            showResult(message.result);
        } else {
            done();
            showError(message.message);
        }
    };
    worker.onerror = (event) => {
        done();
        showError(event.message || "worker failed");
    };
    worker.postMessage({ bytes, trusted }, [bytes]);
}

function readFile(file) {
    return new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onprogress = (event) => {
            if (event.lengthComputable) showProgress("read", event.loaded / event.total);
        };
        reader.onload = () => resolve(reader.result);
        reader.onerror = () => reject(reader.error ?? new Error("cannot read the file"));
        reader.readAsArrayBuffer(file);
    });
}

async function fetchTranscript(drawId) {
    let response;
    try {
        response = await fetch(`/api/v1/draws/${encodeURIComponent(drawId)}/transcript`, {
            headers: { accept: "application/json" },
        });
    } catch (error) {
        throw new Error(format(text.fetchFailed, { error: error.message }));
    }
    if (!response.ok) {
        let detail = "";
        try {
            const body = await response.json();
            detail = body?.error?.message ?? "";
        } catch {
            // Not JSON: the status says enough.
        }
        throw new Error(format(text.httpError, { status: response.status, detail }).trim());
    }
    return response.arrayBuffer();
}

fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    if (!file) return;
    current = { load: () => readFile(file) };
    verify();
});

again.addEventListener("click", verify);

if (form.dataset.draw) {
    const drawId = form.dataset.draw;
    current = { load: () => fetchTranscript(drawId) };
    verify();
}
