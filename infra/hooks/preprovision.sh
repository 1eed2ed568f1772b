#!/bin/sh
# azd preprovision hook (azure.yaml), before any resource is created:
#  1. refuses a VALET_CORS_ORIGINS holding "*" (the app refuses it at start-up, but the storage CORS rule
#     would already exist by then) or spaces (Bicep splits the list on commas only);
#  2. creates the two app secrets once per azd environment, when they are not set yet:
#     VALET_GRANT_SIGNING_KEYS ("k<yyyymmdd>:<base64url of 32 random bytes>") and VALET_APIKEY_PEPPER
#     (base64url of 32 random bytes), the formats valet/settings.py reads. azd keeps them in
#     .azure/<env>/.env (git-ignored) and passes them to Bicep, which stores them in Key Vault only;
#  3. sets VALET_VAULT_GENERATION (part of the Key Vault's name) when it is empty: on the first deployment and
#     after `azd down` (the postdown hook empties it), so a new deployment never meets its own soft-deleted,
#     purge-protected vault of the same name.
# `sh infra/hooks/preprovision.sh --print` prints a fresh pair instead (tests use it; handy for rotation).
set -eu

new_secret() {
    python3 -c 'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))'
}

case "${VALET_CORS_ORIGINS:-}" in
    *'*'*)
        echo "valet: VALET_CORS_ORIGINS must list exact origins (https://app.example.com); '*' is refused" >&2
        exit 1
        ;;
    *' '*)
        echo "valet: VALET_CORS_ORIGINS is comma separated without spaces (https://a.example.com,https://b.example.com)" >&2
        exit 1
        ;;
esac

if [ "${1:-}" = "--print" ]; then
    echo "VALET_GRANT_SIGNING_KEYS=k$(date -u +%Y%m%d):$(new_secret)"
    echo "VALET_APIKEY_PEPPER=$(new_secret)"
    exit 0
fi

if [ -z "${VALET_GRANT_SIGNING_KEYS:-}" ]; then
    azd env set VALET_GRANT_SIGNING_KEYS "k$(date -u +%Y%m%d):$(new_secret)"
    echo "valet: created VALET_GRANT_SIGNING_KEYS for this azd environment"
fi
if [ -z "${VALET_APIKEY_PEPPER:-}" ]; then
    azd env set VALET_APIKEY_PEPPER "$(new_secret)"
    echo "valet: created VALET_APIKEY_PEPPER for this azd environment"
fi
if [ -z "${VALET_VAULT_GENERATION:-}" ]; then
    azd env set VALET_VAULT_GENERATION "$(date -u +%Y%m%dT%H%M%SZ)"
    echo "valet: new VALET_VAULT_GENERATION (a new Key Vault name for this deployment)"
fi
