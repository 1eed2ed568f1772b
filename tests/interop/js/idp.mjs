// A certified OpenID provider nobody here wrote (panva's oidc-provider from the npm registry) on loopback,
// issuing client-credentials JWT access tokens (RFC 9068) for audience "valet" with scope "Uploads.Write".
//
//   node idp.mjs <port> <keys.json>
//
// keys.json: {"keys": [<private JWKs>]} (RS256 and ES256; the first key of an algorithm signs). Two
// resources choose the algorithm: urn:valet:rs256 and urn:valet:es256. Client: valet-interop / secret,
// client_secret_post. Prints "ready <issuer>" once listening; SIGTERM stops it.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, keysFile] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(readFileSync(keysFile, "utf8"));

const resources = {
  "urn:valet:rs256": "RS256",
  "urn:valet:es256": "ES256",
};

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: "valet-interop",
      client_secret: "interop-secret-not-a-real-one",
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_post",
      scope: "Uploads.Write",
    },
  ],
  scopes: ["Uploads.Write"],
  ttl: { ClientCredentials: 600 },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "urn:valet:rs256",
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        const alg = resources[resource];
        if (!alg) throw new Error("unknown resource");
        return {
          scope: "Uploads.Write",
          audience: "valet",
          accessTokenTTL: 600,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg } },
        };
      },
    },
  },
});

const server = provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`ready ${issuer}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
