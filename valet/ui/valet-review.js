// valet-review.js: the upload page's review view, for callers holding the review role (VALET_REVIEW_ROLE).
//
// It appears only when GET /api/review/quarantine answers 200 for the credential in the page; for anyone
// else the review routes answer 404 and the view stays hidden. Everything is rendered with textContent
// (record fields are uploader-controlled text); the read URL downloads as an attachment, never renders.

import { authHeaders } from "/api/ui/valet-upload.js";

const $ = (id) => document.getElementById(id);

async function api(path, auth, init = {}) {
  const response = await fetch(new URL(path, $("api").value), {
    ...init, cache: "no-store", credentials: "omit",
    headers: { ...authHeaders(auth), ...(init.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body, etag: response.headers.get("etag") };
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.append(td);
}

function field(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = name;
  dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
  list.append(dt, dd);
}

function wireReview() {
  const section = $("review");
  const rows = $("review-rows");
  const more = $("review-more");
  const record = $("review-record");
  const result = $("review-result");
  const currentAuth = () => ({ kind: $("kind").value, secret: $("credential").value.trim() });
  let continuation = null;
  let current = null;  // {uploadId, etag}

  const filters = () => {
    const query = new URLSearchParams();
    for (const [id, key] of [["f-reason", "reason"], ["f-caller", "caller"], ["f-since", "since"], ["f-until", "until"]]) {
      const value = $(id).value.trim();
      if (value) query.set(key, value);
    }
    return query;
  };

  const render = (items, append) => {
    if (!append) rows.replaceChildren();
    for (const item of items) {
      const row = document.createElement("tr");
      row.dataset.uploadId = item.uploadId;
      cell(row, item.decidedAt);
      cell(row, item.uploadId);
      cell(row, item.caller);
      cell(row, item.reason);
      cell(row, item.kept);
      cell(row, item.review.state + (item.own ? " (yours)" : ""));
      row.tabIndex = 0;
      row.addEventListener("click", () => open(item.uploadId));
      rows.append(row);
    }
  };

  const list = async (append = false) => {
    const auth = currentAuth();
    if (!auth.secret) { section.hidden = true; return; }
    const query = filters();
    if (append && continuation) query.set("continuation", continuation);
    const { status, body } = await api(`review/quarantine?${query}`, auth);
    if (status === 404) { section.hidden = true; return; }  // not a reviewer: the view does not exist
    section.hidden = false;
    if (status !== 200) { result.textContent = `${body.detail || status} [${body.code || "error"}]`; return; }
    render(body.items, append);
    continuation = body.continuation;
    more.hidden = !continuation;
    $("review-count").textContent = `${rows.children.length} shown${body.truncated ? " (scan truncated)" : ""}`;
  };

  const open = async (uploadId) => {
    const { status, body, etag } = await api(`review/quarantine/${encodeURIComponent(uploadId)}`, currentAuth());
    record.hidden = false;
    const fields = $("record-fields");
    fields.replaceChildren();
    const link = $("record-download");
    if (status !== 200) {
      current = null;
      link.hidden = true;
      result.textContent = `${body.detail || status} [${body.code || "error"}]`;
      return;
    }
    current = { uploadId, etag };
    for (const [name, key] of [["Upload", "uploadId"], ["Caller", "caller"], ["Profile", "profile"],
      ["Reason", "reason"], ["Detail", "detail"], ["Declared type", "declaredType"], ["Detected type", "detectedType"],
      ["Size", "size"], ["sha256", "sha256"], ["Decided", "decidedAt"], ["Kept", "kept"], ["Filename", "filename"],
      ]) field(fields, name, body[key]);
    const review = body.review || { state: "open" };
    field(fields, "Review", review.state === "open" ? "open"
      : `${review.state} by ${review.by} at ${review.at}: ${review.reason}`);
    link.hidden = !body.readUrl;
    if (body.readUrl) link.href = body.readUrl;
    result.textContent = "";
  };

  const act = async (action) => {
    if (!current) return;
    const reason = $("review-reason").value;
    const { status, body } = await api(`review/quarantine/${encodeURIComponent(current.uploadId)}/${action}`,
      currentAuth(), { method: "POST", headers: { "content-type": "application/json", ...(current.etag ? { "If-Match": current.etag } : {}) },
        body: JSON.stringify({ reason }) });
    if (status === 200) { await list(); await open(current.uploadId); }  // open() clears the message: set it after
    result.dataset.status = status === 200 ? "done" : "error";
    result.textContent = status === 200 ? `${action === "release" ? "Released" : "Purged"}: the upload is ${body.status}.`
      : `${body.detail || status} [${body.code || "error"}]`;
  };

  $("credential").addEventListener("change", () => list());
  $("kind").addEventListener("change", () => list());
  $("review-filters").addEventListener("submit", (event) => { event.preventDefault(); list(); });
  more.addEventListener("click", () => list(true));
  $("release").addEventListener("click", () => act("release"));
  $("purge").addEventListener("click", () => act("purge"));
}

if (typeof document !== "undefined" && document.getElementById("review")) wireReview();
