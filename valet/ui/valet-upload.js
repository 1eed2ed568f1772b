// valet-upload.js: the browser side of a valet key upload, with no dependencies and no build step.
//
// Copy what you need into your web app. The three steps, each usable on its own:
//   const grant = await requestGrant(apiBase, auth, file);          // fetch: POST /api/uploads
//   await putToStorage(grant, file, (sent, total) => ...);          // XMLHttpRequest: PUT straight to storage
//   const status = await waitForDecision(grant.statusUrl, auth);    // fetch: GET /api/uploads/{id} until decided
// where auth is {kind: "bearer" | "apikey", secret: "..."}. One PUT needs no renewal (storage checks the SAS
// when the request starts); code of your own that uploads in blocks for longer than the SAS lives calls
//   Object.assign(grant, await renewGrant(apiBase, auth, grant));  // POST /api/uploads/{id}/renew
// before grant.expiresOn, and keeps sending the original grant.headers. Keep the secret in memory: never
// write it to localStorage, a cookie or a URL. Your page's origin must be listed in VALET_CORS_ORIGINS, which the app
// uses for its own responses and (through `valet dev` or the deployment templates) for the storage account.

export class ValetError extends Error {
  constructor(message, code, status = 0) {
    super(message);
    this.name = "ValetError";
    this.code = code;      // the API's problem code ("invalid_size", ...) or "network_error", "storage_error"
    this.status = status;  // HTTP status, 0 when the browser got no response (offline, or refused by CORS)
  }
}

export function authHeaders(auth) {
  return auth.kind === "apikey" ? { "X-API-Key": auth.secret } : { Authorization: `Bearer ${auth.secret}` };
}

async function callApi(url, init) {
  let response;
  try {
    response = await fetch(url, { ...init, cache: "no-store", credentials: "omit" });
  } catch {
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

/** PUT the file to storage with the grant's URL and headers (one request, up to 5,000 MiB). */
export function putToStorage(grant, file, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();  // fetch() cannot report upload progress; XMLHttpRequest can
    xhr.open(grant.method || "PUT", grant.uploadUrl);
    for (const [name, value] of Object.entries(grant.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded, event.total); };
    xhr.onload = () => {
      if (xhr.status === 201) { onProgress(file.size, file.size); resolve(); return; }
      const code = xhr.getResponseHeader("x-ms-error-code") || "storage_error";
      reject(new ValetError(`Storage refused the upload (${xhr.status} ${code}).`, code, xhr.status));
    };
    xhr.onerror = () => reject(new ValetError("Could not reach storage: offline, the storage account's CORS " +
      "rules do not allow this page's origin, or (local emulator) the browser does not trust its certificate.",
      "network_error"));
    xhr.send(file);
  });
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
    if (status.status !== "pending") return status;
    if (Date.now() > deadline) throw new ValetError("No decision yet; ask again later.", "timeout");
    await new Promise((done) => setTimeout(done, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

// ---- The page served at /api/ui (only runs when that page's form is present) ----------------------------

function wirePage(form) {
  const $ = (id) => document.getElementById(id);
  const result = $("result");
  const progress = $("progress");
  const steps = $("steps");
  $("api").value = new URL("/api/", location.href).href;

  const show = (status, text) => { result.dataset.status = status; result.textContent = text; };
  const step = (text) => { const li = document.createElement("li"); li.textContent = text; steps.append(li); };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    const auth = { kind: $("kind").value, secret: $("credential").value.trim() };
    if (!file || !auth.secret) { show("error", "Choose a file and paste a token or key first."); return; }
    $("upload").disabled = true;
    steps.replaceChildren();
    progress.value = 0;
    try {
      show("granting", "Asking for an upload grant…");
      const grant = await requestGrant($("api").value, auth, file, { profile: $("profile").value.trim() });
      step(`Granted upload ${grant.uploadId} (profile ${grant.profile}, up to ${grant.maxBytes} bytes).`);
      show("uploading", "Uploading straight to storage…");
      await putToStorage(grant, file, (sent, total) => { progress.value = total ? (100 * sent) / total : 100; });
      step(`Uploaded ${file.size} bytes.`);
      show("pending", "Uploaded; waiting for validation…");
      const decision = await waitForDecision(grant.statusUrl, auth);
      const why = decision.reason ? ` (${decision.reason})` : "";
      show(decision.status, `${decision.status}${why}: ${file.name}`);
      step(`Decision: ${decision.status}${why}.`);
    } catch (error) {
      show("error", `${error.message}${error.code ? ` [${error.code}]` : ""}`);
    } finally {
      $("upload").disabled = false;
    }
  });
}

const form = typeof document !== "undefined" && document.getElementById("valet-upload");
if (form) wirePage(form);
