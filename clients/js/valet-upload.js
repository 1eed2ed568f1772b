// valet-upload.js: the browser side of a valet key upload, with no dependencies and no build step.
//
// Install it (npm package valet-upload-client, clients/js) or copy what you need into your web app; the
// app's upload page (/api/ui) serves this same file. The three steps, each usable on its own:
//   const { profiles } = await listProfiles(apiBase, auth);         // fetch: GET /api/profiles (optional)
//   checkFile(profiles[0], file);                                   // size and type, before any grant
//   const grant = await requestGrant(apiBase, auth, file);          // fetch: POST /api/uploads
//   await putToStorage(grant, file, (sent, total) => ..., { apiBase, auth });  // XMLHttpRequest: PUT to storage
//   const status = await waitForDecision(grant.statusUrl, auth);    // fetch: GET /api/uploads/{id} until decided
//   const { downloadUrl } = await requestDownload(grant.statusUrl, auth);  // once accepted: a short read URL
// where auth is {kind: "bearer" | "apikey", secret: "..."}. Given {apiBase, auth}, putToStorage renews an
// expired SAS itself (else it fails with code "grant_expired"). For large files, and uploads that survive a
// page reload, uploadResumable(apiBase, auth, file, {onProgress}) does grant, blocks, renewal and commit
// itself (see below). Code of your own that uploads in blocks for longer than the SAS lives calls
//   Object.assign(grant, await renewGrant(apiBase, auth, grant));  // POST /api/uploads/{id}/renew
// before grant.expiresOn, and keeps sending the original grant.headers. Keep the secret in memory: never
// write it to localStorage, a cookie or a URL. Your page's origin must be listed in VALET_CORS_ORIGINS, which the app
// uses for its own responses and (through `valet dev` or the deployment templates) for the storage account.

export class ValetError extends Error {
  constructor(message, code, status = 0) {
    super(message);
    this.name = "ValetError";
    this.code = code;      // the API's problem code ("invalid_size", ...) or one of the module's own: docs/api.md
    this.status = status;  // HTTP status, 0 when the browser got no response (offline, or refused by CORS)
  }
}

// Node's codes for a certificate it cannot verify (a browser only says the request failed).
const CERTIFICATE_ERRORS = ["DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "CERT_HAS_EXPIRED", "ERR_TLS_CERT_ALTNAME_INVALID"];

export function authHeaders(auth) {
  return auth.kind === "apikey" ? { "X-API-Key": auth.secret } : { Authorization: `Bearer ${auth.secret}` };
}

async function callApi(url, init) {
  let response;
  try {
    response = await fetch(url, { ...init, cache: "no-store", credentials: "omit" });
  } catch (error) {
    const cause = error && error.cause && error.cause.code;  // Node's fetch says why; a browser never does
    if (CERTIFICATE_ERRORS.includes(cause)) {
      throw new ValetError(`The certificate of ${new URL(url).origin} could not be verified (${cause}): give ` +
        "Node the CA that signed it (NODE_EXTRA_CA_CERTS=<file>; valet dev's is .valet/azurite/tls/cert.pem).",
        "certificate_unverified");
    }
    throw new ValetError(`Could not reach ${new URL(url).origin}: offline, or this page's origin is not ` +
      "allowed to call the API (VALET_CORS_ORIGINS).", "network_error");
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json().catch(() => ({})) : {};
  if (!response.ok) {
    // problem+json: {code, title, detail}; never includes the credential you sent.
    throw new ValetError(body.detail || body.title || `HTTP ${response.status}`, body.code || "http_error",
      response.status);
  }
  return { body, response };
}

/** What remains of this caller's quotas: {quotas: [{scope, profile, limit, used, reserved, remaining, resetsAt}]}
 *  (empty for profiles without a quota, and from a service without quotas). */
export async function getQuota(apiBase, auth) {
  try {
    const { body } = await callApi(new URL("quota", apiBase), { headers: authHeaders(auth) });
    return body;
  } catch (error) {
    if (error.status === 404) return { quotas: [] };
    throw error;
  }
}

/** "images (caller): 3 files and 1.5 MiB left today, 1 more pending" from one quota object. */
export function describeQuota(quota) {
  const left = quota.remaining ?? {};
  const parts = [];
  if ("filesPerDay" in left) parts.push(`${left.filesPerDay} files`);
  if ("bytesPerDay" in left) parts.push(mebibytes(left.bytesPerDay));
  let text = parts.length ? `${parts.join(" and ")} left today` : "";
  if ("pendingFiles" in left) text += `${text ? ", " : ""}${left.pendingFiles} more pending`;
  return `${quota.profile} (${quota.scope}): ${text || "no limit"}`;
}

/** The upload profiles this caller may use: {default, profiles: [{name, maxBytes, types, allowEmpty, ...}]}. */
export async function listProfiles(apiBase, auth) {
  const { body } = await callApi(new URL("profiles", apiBase), { headers: authHeaders(auth) });
  return body;
}

/** The type to declare for `file` under `profile`: the browser's, or, when the browser knows none for the
 * name (HEIC, HEIF and AVIF photos on many systems) or says only octet-stream, the profile's type for the
 * file's extension. */
export function typeFor(profile, file) {
  const given = (file.type || "").toLowerCase();
  if (given && given !== "application/octet-stream") return given;
  const dot = file.name.lastIndexOf(".");
  const ext = dot > 0 ? file.name.slice(dot + 1).toLowerCase() : "";
  const match = profile && ext ? Object.entries(profile.types).find(([, exts]) => exts.includes(ext)) : undefined;
  return match ? match[0] : given || "application/octet-stream";
}

/** Refuse, as the grant API would, a file that `profile` does not take (type, size, empty). */
export function checkFile(profile, file) {
  const type = typeFor(profile, file);
  if (!Object.hasOwn(profile.types, type)) {
    throw new ValetError(`Profile '${profile.name}' does not accept '${type}'. Accepted types: ` +
      `${Object.keys(profile.types).sort().join(", ")}.`, "content_type_not_allowed", 415);
  }
  if (file.size > profile.maxBytes) {
    throw new ValetError(`${file.name} is ${file.size} bytes; the '${profile.name}' profile takes at most ` +
      `${profile.maxBytes} bytes.`, "size_exceeds_profile", 413);
  }
  if (file.size === 0 && !profile.allowEmpty) {
    throw new ValetError(`Profile '${profile.name}' does not accept empty files.`, "empty_not_allowed", 400);
  }
}

/** Ask the app for a valet key for `file`. Resolves to the grant: {uploadUrl, method, headers, statusUrl, ...}.
 * `contentType` overrides the browser's type (see `typeFor`). */
export async function requestGrant(apiBase, auth, file, { profile, contentType } = {}) {
  const request = { filename: file.name, contentType: contentType || file.type || "application/octet-stream",
    size: file.size };
  if (profile) request.profile = profile;
  const { body } = await callApi(new URL("uploads", apiBase), {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders(auth) },
    body: JSON.stringify(request),
  });
  return body;
}

/** A fresh SAS for the same blob of `grant` while the upload is not complete. Resolves to {uploadUrl,
 * signature, expiresOn, ...}: take those three and keep the original grant's headers (the renewal has no
 * grant header). Fails with code upload_complete, upload_decided or upload_window_closed when there is
 * nothing to renew (then ask for a new grant). */
export async function renewGrant(apiBase, auth, grant) {
  const { body } = await callApi(new URL(`uploads/${encodeURIComponent(grant.uploadId)}/renew`, apiBase), {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders(auth) },
    body: JSON.stringify({ blobUri: grant.blobUri }),
  });
  return { uploadUrl: body.uploadUrl, signature: body.signature, expiresOn: body.expiresOn };
}

// Storage's answer to a SAS it does not accept (expired, by its clock or ours): Azure says AuthenticationFailed,
// Azurite AuthorizationFailure, both a bare 403. A create-only SAS meeting an existing blob is
// AuthorizationPermissionMismatch instead: not an expiry.
const SAS_NOT_ACCEPTED = ["AuthenticationFailed", "AuthorizationFailure"];
const RENEW_BEFORE_MS = 30_000;

function expiresSoon(grant, marginMs = 0) {
  const expires = Date.parse(grant.expiresOn);
  return Number.isFinite(expires) && Date.now() + marginMs >= expires;
}

function putOnce(grant, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();  // fetch() cannot report upload progress; XMLHttpRequest can
    xhr.open(grant.method || "PUT", grant.uploadUrl);
    for (const [name, value] of Object.entries(grant.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded, event.total); };
    xhr.onload = () => {
      if (xhr.status === 201) { onProgress(file.size, file.size); resolve(); return; }
      const code = xhr.getResponseHeader("x-ms-error-code") ||
        (/<Code>([A-Za-z]+)<\/Code>/.exec(xhr.responseText || "") || [])[1] || "storage_error";
      if (xhr.status === 403 && (SAS_NOT_ACCEPTED.includes(code) || expiresSoon(grant))) {
        reject(new ValetError(`The upload URL expired (it was valid until ${grant.expiresOn}; storage answered ` +
          `403 ${code}). Renew it with renewGrant(apiBase, auth, grant), or pass {apiBase, auth} to putToStorage ` +
          "to have it renewed, or ask for a new grant.", "grant_expired", 403));
        return;
      }
      reject(new ValetError(`Storage refused the upload (${xhr.status} ${code}).`, code, xhr.status));
    };
    xhr.onerror = () => reject(new ValetError("Could not reach storage: offline, the storage account's CORS " +
      "rules do not allow this page's origin, or (local emulator) the browser does not trust its certificate.",
      "network_error"));
    xhr.send(file);
  });
}

/** PUT the file to storage with the grant's URL and headers (one request, up to 5,000 MiB). With
 * `{apiBase, auth}`, a grant whose SAS expired (by this machine's clock, or storage's: its 403) is renewed
 * for the same blob (POST /api/uploads/{id}/renew, updating `grant` in place) and the PUT is sent once
 * more; without them, or when the service has nothing left to renew, it fails with code "grant_expired". */
export async function putToStorage(grant, file, onProgress = () => {}, { apiBase, auth } = {}) {
  const renew = apiBase && auth ? async () => Object.assign(grant, await renewGrant(apiBase, auth, grant)) : null;
  if (renew && expiresSoon(grant, RENEW_BEFORE_MS)) await renew();
  try {
    await putOnce(grant, file, onProgress);
  } catch (error) {
    if (!renew || error.code !== "grant_expired") throw error;
    await renew();  // fails with upload_window_closed (or another code) when there is nothing to renew
    await putOnce(grant, file, onProgress);
  }
}

/** Poll the status URL until the upload is decided; resolves to {status, reason?, ...}. */
export async function waitForDecision(statusUrl, auth, { timeoutMs = 300_000, onUpdate = () => {} } = {}) {
  const deadline = Date.now() + timeoutMs;
  let delay = 500;
  for (;;) {
    let status;
    try {
      ({ body: status } = await callApi(statusUrl, { headers: authHeaders(auth) }));
    } catch (error) {
      if (![429, 503].includes(error.status)) throw error;  // busy: wait and ask again
      status = { status: "pending" };
    }
    onUpdate(status);
    if (!["pending", "retrying"].includes(status.status)) return status;  // retrying: the app tries again
    if (Date.now() > deadline) throw new ValetError("No decision yet; ask again later.", "timeout");
    await new Promise((done) => setTimeout(done, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

/** Give an unused grant back (DELETE /api/uploads/{id}?blobUri=...): its uploadUrl can no longer create the
 * blob, and the status says "cancelled". Fails with code "upload_exists" once something was uploaded. */
export async function cancelGrant(grant, auth) {
  const url = new URL(grant.statusUrl);
  url.searchParams.set("blobUri", grant.blobUri);
  await callApi(url, { method: "DELETE", headers: authHeaders(auth) });
}

/** A short-lived, read-only URL for an accepted upload: {downloadUrl, expiresOn}. Storage serves it as an
 * attachment of the verified type, so a browser saves it instead of rendering it. 409 unless accepted. */
export async function requestDownload(statusUrl, auth) {
  const { body } = await callApi(`${statusUrl}/download`, { headers: authHeaders(auth) });
  return body;
}

// ---- Resumable block uploads (docs/resumable-uploads.md) ------------------------------------------------
//   const grant = await uploadResumable(apiBase, auth, file, { onProgress: (sent, total, rate) => ... });
// stages the file in fixed blocks with the grant's create-only SAS and commits them. A page reloaded (or a
// tab closed) in the middle calls it again with the same file picked again: it renews the SAS of the same
// upload, asks which blocks storage holds (GET /api/uploads/{id}/blocks, else its own journal) and sends
// only the others. The journal lives in localStorage, keyed by the file's name, size, type and
// lastModified; it holds the grant without its SAS and the blocks storage confirmed, never a credential.

export const BLOCK_BYTES = 8 * 1024 * 1024;

/** Block n's id: base64 of "valet-" and n in eight digits (the same length for every block). */
export function blockId(n) {
  return btoa(`valet-${String(n).padStart(8, "0")}`);
}

/** The journal uploadResumable keeps by default: localStorage, one entry per file (see above). */
export function browserJournal(storage = globalThis.localStorage) {
  return {
    get: (key) => { try { return JSON.parse(storage.getItem(key) || "null"); } catch { return null; } },
    set: (key, value) => storage.setItem(key, JSON.stringify(value)),
    remove: (key) => storage.removeItem(key),
  };
}

function journalKey(apiBase, file, profile, blockBytes) {
  return `valet-upload:${new URL(apiBase, location.href).href}|${profile || ""}|${blockBytes}|` +
    `${file.name}|${file.size}|${file.type}|${file.lastModified}`;
}

/** What storage holds for the grant's blob: {committed, blocks: [{id, size}], expiresOn}, or null when the
 * service cannot say (an older service without the route, or busy). */
export async function listBlocks(apiBase, auth, grant) {
  const url = new URL(`uploads/${encodeURIComponent(grant.uploadId)}/blocks`, apiBase);
  url.searchParams.set("blobUri", grant.blobUri);
  try {
    const { body } = await callApi(url, { headers: authHeaders(auth) });
    return Array.isArray(body.blocks) ? body : null;
  } catch {
    return null;
  }
}

const pause = (ms) => new Promise((done) => setTimeout(done, ms));

function putBlock(url, n, blob, onSent) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `${url}&comp=block&blockid=${encodeURIComponent(blockId(n))}`);
    xhr.setRequestHeader("x-ms-version", "2026-10-06");  // create-only blocks: 2026-04-06 or later
    xhr.upload.onprogress = (event) => onSent(event.loaded);
    xhr.onload = () => resolve({ status: xhr.status, code: xhr.getResponseHeader("x-ms-error-code") || "" });
    xhr.onerror = () => resolve({ status: 0, code: "network_error" });
    xhr.send(blob);
  });
}

/** Upload `file` in blocks, resuming a journaled upload of the same file; resolves to the grant (with
 * statusUrl, and resumedBlocks / bytesSent for this run) once storage committed the blob. */
export async function uploadResumable(apiBase, auth, file, { profile, contentType, onProgress = () => {},
  journal = browserJournal(), blockBytes = BLOCK_BYTES, concurrency = 4, retries = 4 } = {}) {
  const key = journalKey(apiBase, file, profile, blockBytes);
  const count = Math.max(1, Math.ceil(file.size / blockBytes));
  const length = (n) => Math.min(blockBytes, file.size - n * blockBytes);
  let saved = journal.get(key);
  let grant = null;
  let held = new Set();
  if (saved) {
    grant = { ...saved.grant };
    try {
      Object.assign(grant, await renewGrant(apiBase, auth, grant));
    } catch (error) {
      if (["upload_complete", "upload_decided"].includes(error.code)) {
        journal.remove(key);
        return { ...grant, resumedBlocks: count, bytesSent: 0 };
      }
      if (error.status === 0 || error.status >= 500 || error.status === 429 || error.status === 401) throw error;
      journal.remove(key);  // window closed, or not this caller's: start over
      grant = null;
    }
  }
  if (grant) {
    const doc = await listBlocks(apiBase, auth, grant);
    if (doc && doc.committed) { journal.remove(key); return { ...grant, resumedBlocks: count, bytesSent: 0 }; }
    const wanted = new Map(Array.from({ length: count }, (_, n) => [blockId(n), n]));
    held = doc ? new Set(doc.blocks.filter((b) => wanted.has(b.id) && b.size === length(wanted.get(b.id)))
      .map((b) => wanted.get(b.id))) : new Set(saved.done);
  } else {
    grant = await requestGrant(apiBase, auth, file, { profile, contentType });
    const { uploadUrl, signature, ...keep } = grant;  // never the SAS at rest
    saved = { grant: keep, done: [] };
    journal.set(key, saved);
  }
  const resumedBlocks = held.size;
  const started = performance.now();
  let stored = [...held].reduce((sum, n) => sum + length(n), 0);
  let sent = 0;
  const inFlight = new Map();
  const report = () => {
    const now = stored + [...inFlight.values()].reduce((a, b) => a + b, 0);
    const seconds = Math.max((performance.now() - started) / 1000, 0.001);
    onProgress(Math.min(now, file.size), file.size, sent / seconds);
  };
  let renewing = null;
  const freshSas = async () => {
    if (Date.parse(grant.expiresOn) - Date.now() > 30_000) return;
    renewing = renewing || renewGrant(apiBase, auth, grant).then((fresh) => Object.assign(grant, fresh))
      .finally(() => { renewing = null; });
    await renewing;
  };
  const stage = async (n) => {
    const blob = file.slice(n * blockBytes, n * blockBytes + length(n));
    for (let attempt = 0; ; attempt += 1) {
      await freshSas();
      const result = await putBlock(grant.uploadUrl, n, blob, (loaded) => { inFlight.set(n, loaded); report(); });
      inFlight.delete(n);
      sent += blob.size;
      if (result.status === 201) break;
      const transient = [0, 408, 429, 500, 502, 503, 504].includes(result.status) ||
        (result.status === 403 && ["AuthenticationFailed", "AuthorizationFailure"].includes(result.code));
      if (result.status === 403 && transient) grant.expiresOn = new Date(0).toISOString();  // renew before the retry
      if (!transient || attempt >= retries) {
        throw new ValetError(`Storage refused block ${n} (${result.status} ${result.code}).`,
          result.code || "storage_error", result.status);
      }
      await pause(500 * 2 ** attempt);  // the network is back soon, or not: back off
    }
    stored += blob.size;
    saved.done = [...new Set([...(saved.done || []), n])];
    journal.set(key, saved);
    report();
  };
  const missing = Array.from({ length: count }, (_, n) => n).filter((n) => !held.has(n));
  report();
  const workers = Array.from({ length: Math.min(concurrency, missing.length) }, async () => {
    while (missing.length) await stage(missing.shift());
  });
  await Promise.all(workers);
  await freshSas();
  const headers = Object.fromEntries(Object.entries(grant.headers).filter(([k]) => k.toLowerCase() !== "x-ms-blob-type"));
  const body = `<?xml version="1.0" encoding="utf-8"?><BlockList>${Array.from({ length: count },
    (_, n) => `<Latest>${blockId(n)}</Latest>`).join("")}</BlockList>`;
  for (let attempt = 0; ; attempt += 1) {
    await freshSas();
    let status = 0;
    let code = "network_error";
    try {
      const response = await fetch(`${grant.uploadUrl}&comp=blocklist`, { method: "PUT", body,
        headers: { ...headers, "x-ms-version": "2026-10-06" }, credentials: "omit" });
      status = response.status;
      code = response.headers.get("x-ms-error-code") || "";
    } catch { /* offline: try again below */ }
    if (status === 201) break;
    if (status === 403 || attempt >= retries) {
      // UnauthorizedBlobOverwrite: create never overwrites, and an earlier try may have committed (its answer
      // was lost). Storage knows.
      const doc = await listBlocks(apiBase, auth, grant);
      if (doc && doc.committed) break;
      if (status === 403 || attempt >= retries) {
        throw new ValetError(`Storage refused the block list (${status} ${code}).`, code || "storage_error", status);
      }
    }
    await pause(500 * 2 ** attempt);
  }
  journal.remove(key);
  return { ...grant, resumedBlocks, bytesSent: sent };
}

// ---- The page served at /api/ui (only runs when that page's form is present) ----------------------------

function mebibytes(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) ? 1 : 0)} MiB` : `${bytes} bytes`;
}

function wirePage(form) {
  const $ = (id) => document.getElementById(id);
  const result = $("result");
  const progress = $("progress");
  const steps = $("steps");
  const choice = $("profile");
  $("api").value = new URL("/api/", location.href).href;

  const show = (status, text) => { result.dataset.status = status; result.textContent = text; };
  const step = (text) => { const li = document.createElement("li"); li.textContent = text; steps.append(li); };
  const currentAuth = () => ({ kind: $("kind").value, secret: $("credential").value.trim() });

  // The profiles this credential may use, fetched once per credential and offered in the select.
  let listing = { key: null, promise: null, profiles: [] };
  const chosen = () => listing.profiles.find((p) => p.name === choice.value);
  const showQuota = () => {  // what remains of the chosen profile's quotas; nothing when it has none
    const auth = currentAuth();
    const name = choice.value;
    if (!auth.secret || !name) { $("quota-hint").textContent = ""; return; }
    getQuota($("api").value, auth).then((doc) => {
      if (choice.value !== name) return;
      $("quota-hint").textContent = doc.quotas.filter((q) => q.profile === name).map(describeQuota).join("; ");
    }, () => { $("quota-hint").textContent = ""; });
  };
  const describe = () => {
    showQuota();
    const profile = chosen();
    $("profile-hint").textContent = profile ? `Up to ${mebibytes(profile.maxBytes)}: ` +
      Object.entries(profile.types).map(([type, exts]) => `${type} (.${exts.join(", .")})`).join("; ") : "";
    $("file").accept = profile ? Object.entries(profile.types)
      .flatMap(([type, exts]) => [type, ...exts.map((e) => `.${e}`)]).join(",") : "";
  };
  const ensureProfiles = (auth) => {
    const key = `${auth.kind} ${auth.secret}`;
    if (listing.key === key && listing.promise) return listing.promise;
    const promise = listProfiles($("api").value, auth).then((doc) => {
      if (listing.promise !== promise) return doc;  // the credential changed meanwhile
      const keep = choice.value;
      listing.profiles = doc.profiles;
      choice.replaceChildren(...doc.profiles.map((p) => new Option(`${p.name} (up to ${mebibytes(p.maxBytes)})`, p.name)));
      const names = doc.profiles.map((p) => p.name);
      choice.value = names.includes(keep) ? keep : (doc.default ?? names[0] ?? "");
      describe();
      return doc;
    }, (error) => {
      if (listing.promise === promise) listing = { key: null, promise: null, profiles: [] };
      throw error;
    });
    listing = { key, promise, profiles: listing.profiles };
    return promise;
  };
  const refresh = () => {
    const auth = currentAuth();
    if (auth.secret) ensureProfiles(auth).catch((error) => show("error", `${error.message} [${error.code}]`));
  };
  $("credential").addEventListener("change", refresh);
  $("kind").addEventListener("change", refresh);
  choice.addEventListener("change", describe);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    const auth = currentAuth();
    if (!file || !auth.secret) { show("error", "Choose a file and paste a token or key first."); return; }
    $("upload").disabled = true;
    steps.replaceChildren();
    progress.value = 0;
    try {
      show("checking", "Checking the file against the profile…");
      await ensureProfiles(auth);
      const profile = chosen();
      if (!profile) throw new ValetError("This credential may use no upload profile.", "insufficient_scope", 403);
      checkFile(profile, file);  // refused here, no grant is asked for
      show("granting", "Asking for an upload grant…");
      let grant;
      if (file.size > 4 * BLOCK_BYTES) {  // large: blocks, resumable after a reload (pick the same file again)
        show("uploading", "Uploading in blocks straight to storage (after a reload, pick the same file again)…");
        grant = await uploadResumable($("api").value, auth, file, { profile: profile.name,
          contentType: typeFor(profile, file),
          onProgress: (sent, total, rate) => {
            progress.value = total ? (100 * sent) / total : 100;
            result.textContent = `Uploading in blocks… ${mebibytes(sent)} of ${mebibytes(total)}, ` +
              `${(rate / (1024 * 1024)).toFixed(1)} MiB/s`;
          } });
        step(`Upload ${grant.uploadId} (profile ${profile.name}): ${file.size} bytes in blocks` +
          (grant.resumedBlocks ? `, resumed: ${grant.resumedBlocks} blocks were already stored.` : "."));
      } else {
        grant = await requestGrant($("api").value, auth, file,
          { profile: profile.name, contentType: typeFor(profile, file) });
        step(`Granted upload ${grant.uploadId} (profile ${grant.profile}, up to ${grant.maxBytes} bytes).`);
        show("uploading", "Uploading straight to storage…");
        await putToStorage(grant, file, (sent, total) => { progress.value = total ? (100 * sent) / total : 100; },
          { apiBase: $("api").value, auth });
        step(`Uploaded ${file.size} bytes.`);
      }
      show("pending", "Uploaded; waiting for validation…");
      const decision = await waitForDecision(grant.statusUrl, auth);
      const why = decision.reason ? ` (${decision.reason})` : "";
      show(decision.status, `${decision.status}${why}: ${file.name}`);
      step(`Decision: ${decision.status}${why}.`);
      showQuota();
      if (decision.status === "accepted") {
        const { downloadUrl } = await requestDownload(grant.statusUrl, auth);
        const link = Object.assign(document.createElement("a"), { id: "download", href: downloadUrl,
          rel: "noreferrer", textContent: "Download it (a read link, valid for a few minutes)" });
        const li = document.createElement("li");
        li.append(link);
        steps.append(li);
      }
    } catch (error) {
      show("error", `${error.message}${error.code ? ` [${error.code}]` : ""}`);
    } finally {
      $("upload").disabled = false;
    }
  });
}

const form = typeof document !== "undefined" && document.getElementById("valet-upload");
if (form) wirePage(form);
