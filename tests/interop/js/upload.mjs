// Uploads a file with the Azure Storage SDK for JavaScript (@azure/storage-blob), as a client written by
// someone who never read valet's code would: BlobClient from the grant's URL, then uploadData.
//
//   node upload.mjs <uploadUrl> <file> plain            -> no options at all (SDK defaults)
//   node upload.mjs <uploadUrl> <file> options <json>   -> the grant's headers as SDK options
//
// Prints {"status": <HTTP status>} or {"error": <code>} as one JSON line. NODE_EXTRA_CA_CERTS must name
// the emulator's certificate for a loopback HTTPS endpoint.
import { readFileSync } from "node:fs";
import { BlobClient } from "@azure/storage-blob";

const [url, file, mode, headersJson] = process.argv.slice(2);
const data = readFileSync(file);
const blob = new BlobClient(url);
let options = {};
if (mode === "options") {
  const headers = JSON.parse(headersJson);
  const metadata = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase().startsWith("x-ms-meta-")) metadata[name.slice("x-ms-meta-".length)] = value;
  }
  options = {
    blobHTTPHeaders: { blobContentType: headers["x-ms-blob-content-type"] },
    metadata,
  };
}
try {
  const response = await blob.getBlockBlobClient().uploadData(data, options);
  console.log(JSON.stringify({ status: response._response.status }));
} catch (err) {
  console.log(JSON.stringify({ error: err.code || err.name, status: err.statusCode || 0 }));
  process.exitCode = 1;
}
