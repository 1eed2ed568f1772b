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
// expired SAS itself (else it fails with code "grant_expired"); code of your own that uploads in blocks for
// longer than the SAS lives calls
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

/** The upload profiles this caller may use: {default, profiles: [{name, maxBytes, types, allowEmpty, ...}]}. */
export async function listProfiles(apiBase, auth) {
  const { body } = await callApi(new URL("profiles", apiBase), { headers: authHeaders(auth) });
  return body;
}

/** Refuse, as the grant API would, a file that `profile` does not take (type, size, empty). */
export function checkFile(profile, file) {
  const type = (file.type || "application/octet-stream").toLowerCase();
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

/** Ask the app for a valet key for `file`. Resolves to the grant: {uploadUrl, method, headers, statusUrl, ...}. */
export async function requestGrant(apiBase, auth, file, { profile } = {}) {
  const request = { filename: file.name, contentType: file.type || "application/octet-stream", size: file.size };
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
  const describe = () => {
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
      const grant = await requestGrant($("api").value, auth, file, { profile: profile.name });
      step(`Granted upload ${grant.uploadId} (profile ${grant.profile}, up to ${grant.maxBytes} bytes).`);
      show("uploading", "Uploading straight to storage…");
      await putToStorage(grant, file, (sent, total) => { progress.value = total ? (100 * sent) / total : 100; },
        { apiBase: $("api").value, auth });
      step(`Uploaded ${file.size} bytes.`);
      show("pending", "Uploaded; waiting for validation…");
      const decision = await waitForDecision(grant.statusUrl, auth);
      const why = decision.reason ? ` (${decision.reason})` : "";
      show(decision.status, `${decision.status}${why}: ${file.name}`);
      step(`Decision: ${decision.status}${why}.`);
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
