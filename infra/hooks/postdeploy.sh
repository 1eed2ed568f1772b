#!/bin/sh
# azd postdeploy hook (azure.yaml), after `azd deploy` has published the code: creates the Event Grid
# subscriptions (infra/eventgrid.bicep). Their webhook URLs carry the function app's extension keys
# (blobs_extension for the blob trigger, eventgrid_extension for malware_scan_result), which the host
# makes when it first starts with the deployed functions, so this waits for them (up to 5 minutes) first.
# Needs the Azure CLI signed in to the same subscription (`az login`). Re-running it is harmless.
set -eu

: "${AZURE_RESOURCE_GROUP:?run by azd (azd up or azd deploy), which sets the environment}"
: "${AZURE_FUNCTION_APP_NAME:?missing; run azd provision first}"
: "${VALET_UPLOADS_TOPIC_NAME:?missing; run azd provision first}"
uploads_container="${VALET_UPLOADS_CONTAINER:-uploads}"
malware_topic="${VALET_MALWARE_TOPIC_NAME:-}"
here=$(dirname "$0")

# Wake the app so its host starts and creates the keys (Flex Consumption scales to zero).
if [ -n "${VALET_API_URL:-}" ] && command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null --max-time 30 "$VALET_API_URL/" || true
fi

echo "valet: waiting for the function app's extension keys"
tries=0
while :; do
    keys=$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
        --query systemKeys --output json 2>/dev/null || echo '{}')
    ready=false
    case "$keys" in
        *'"blobs_extension"'*) ready=true ;;
    esac
    if [ "$ready" = true ] && [ -n "$malware_topic" ]; then
        case "$keys" in
            *'"eventgrid_extension"'*) ;;
            *) ready=false ;;
        esac
    fi
    [ "$ready" = true ] && break
    tries=$((tries + 1))
    if [ "$tries" -ge "${VALET_KEY_WAIT_TRIES:-30}" ]; then
        echo "valet: the app has no extension keys yet; check its logs, then run: azd hooks run postdeploy" >&2
        exit 1
    fi
    sleep "${VALET_KEY_WAIT_SECONDS:-10}"
done

az deployment group create --resource-group "$AZURE_RESOURCE_GROUP" --name valet-event-subscriptions \
    --template-file "$here/../eventgrid.bicep" \
    --parameters functionAppName="$AZURE_FUNCTION_APP_NAME" uploadsTopicName="$VALET_UPLOADS_TOPIC_NAME" \
                 uploadsContainer="$uploads_container" malwareTopicName="$malware_topic" \
    --output none
echo "valet: Event Grid subscriptions in place (new uploads now reach validate_upload)"
