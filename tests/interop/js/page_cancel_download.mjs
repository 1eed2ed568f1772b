// clients/js/valet-upload.js in Node: cancel one grant (its URL can then no longer create the blob), upload
// with another and fetch a download URL for it once accepted.
//   node page_cancel_download.mjs <apiBase> <bearer token> <file>
// Prints one JSON line {cancelledPut, cancelledStatus, put, decision, download}. NODE_EXTRA_CA_CERTS names
// the emulator's certificate.
import { readFileSync } from "node:fs";
import { cancelGrant, requestDownload, requestGrant, waitForDecision } from "../../../clients/js/valet-upload.js";

const [apiBase, token, path] = process.argv.slice(2);
const auth = { kind: "bearer", secret: token };
const data = readFileSync(path);
const file = { name: "cat.png", type: "image/png", size: data.length };

const unused = await requestGrant(apiBase, auth, file);
await cancelGrant(unused, auth);
const cancelledPut = (await fetch(unused.uploadUrl, { method: "PUT", headers: unused.headers, body: data })).status;
const cancelledStatus = await waitForDecision(unused.statusUrl, auth);

const grant = await requestGrant(apiBase, auth, file);
const put = (await fetch(grant.uploadUrl, { method: "PUT", headers: grant.headers, body: data })).status;
const decision = await waitForDecision(grant.statusUrl, auth);
const { downloadUrl } = await requestDownload(grant.statusUrl, auth);
const got = await fetch(downloadUrl);
const bytes = Buffer.from(await got.arrayBuffer());
console.log(JSON.stringify({ cancelledPut, cancelledStatus, put, decision,
  download: { status: got.status, same: bytes.equals(data), disposition: got.headers.get("content-disposition") } }));
