// clients/js/valet-upload.js in Node (its fetch-based API calls): request a grant, renew it, PUT with the
// renewed URL and the original headers, wait for the decision.
//   node page_api.mjs <apiBase> <bearer token> <file>
// Prints one JSON line {grant, renewed, put, decision}. NODE_EXTRA_CA_CERTS names the emulator's certificate.
import { readFileSync } from "node:fs";
import { requestGrant, renewGrant, waitForDecision } from "../../../clients/js/valet-upload.js";

const [apiBase, token, path] = process.argv.slice(2);
const auth = { kind: "bearer", secret: token };
const data = readFileSync(path);
const file = { name: "cat.png", type: "image/png", size: data.length };
const grant = await requestGrant(apiBase, auth, file);
const before = { uploadUrl: grant.uploadUrl, expiresOn: grant.expiresOn };
const renewed = await renewGrant(apiBase, auth, grant);
Object.assign(grant, renewed);
const put = await fetch(grant.uploadUrl, { method: "PUT", headers: grant.headers, body: data });
const decision = await waitForDecision(grant.statusUrl, auth);
console.log(JSON.stringify({ before, renewed, headers: grant.headers, put: put.status, decision }));
