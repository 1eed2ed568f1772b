// valet on Azure: the entry point `azd up` deploys (subscription scope, so azd can create the resource group).
// Everything else is in resources.bicep; the Event Grid subscriptions are in eventgrid.bicep, deployed by the
// postdeploy hook once the app's code runs (their webhook URLs need the app's extension keys). See
// docs/deployment.md. These templates are checked by checkov and parse tests only; CI has never deployed them.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names every resource (with a hash of subscription, environment and location).')
param environmentName string

@minLength(1)
@description('Azure region of every resource; it must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@secure()
@description('VALET_GRANT_SIGNING_KEYS: keyId:base64urlKey[,keyId:base64urlKey...], keys of at least 32 bytes; stored only in Key Vault. The preprovision hook creates one per azd environment.')
param grantSigningKeys string

@secure()
@description('VALET_APIKEY_PEPPER: base64url of at least 32 random bytes; stored only in Key Vault. The preprovision hook creates one per azd environment.')
param apiKeyPepper string

@description('VALET_AUTH_ISSUERS: the trusted token issuers (docs/authentication.md), a JSON list; [] refuses every bearer token. An array, not a string: azd substitutes a string parameter\'s value into the JSON text of the parameter file, so a value holding " would break it; an array parameter\'s value is parsed as JSON on its own (azd 1.23.4 and later, azure.yaml).')
param authIssuers array = []

@minLength(1)
@description('VALET_VAULT_GENERATION: part of the Key Vault name, so that a deployment after `azd down` gets a new vault (the old one stays soft-deleted, its name reserved, under purge protection). The preprovision hook makes it; the postdown hook clears it.')
param vaultGeneration string

@description('Browser origins allowed to call the API and upload to storage, comma separated (exact https://host[:port]); "*" is refused. Empty: no CORS.')
param corsOrigins string = ''

@description('Turn on Microsoft Defender for Storage on-upload malware scanning of the uploads account (billed per account and per GB scanned).')
param enableMalwareScanning bool = false

@description('Largest number of GB Defender scans per month (-1: no cap).')
param malwareScanningCapGBPerMonth int = 100

@description('Object id of a user or group that may manage API keys (`valet keys`): read/write on the API key container only. Empty: nobody.')
param keysAdminPrincipalId string = ''

@description('Most instances the Flex Consumption plan may scale out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Days every audit record is kept unchangeable (immutability policy of the audit container).')
@minValue(1)
@maxValue(146000)
param auditRetentionDays int = 90

var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'resources.bicep' = {
  name: 'valet-resources'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    grantSigningKeys: grantSigningKeys
    apiKeyPepper: apiKeyPepper
    authIssuers: authIssuers
    vaultGeneration: vaultGeneration
    corsOrigins: empty(corsOrigins) ? [] : split(corsOrigins, ',')
    enableMalwareScanning: enableMalwareScanning
    malwareScanningCapGBPerMonth: malwareScanningCapGBPerMonth
    keysAdminPrincipalId: keysAdminPrincipalId
    maximumInstanceCount: maximumInstanceCount
    auditRetentionDays: auditRetentionDays
  }
}

// azd stores these in the environment (`azd env get-values`); the postdeploy hook and docs/deployment.md use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output AZURE_KEY_VAULT_NAME string = app.outputs.keyVaultName
output VALET_API_URL string = app.outputs.apiUrl
output VALET_STORAGE_ACCOUNT_NAME string = app.outputs.storageAccountName
output VALET_STORAGE_ACCOUNT_URL string = app.outputs.storageAccountUrl
output VALET_UPLOADS_CONTAINER string = app.outputs.uploadsContainer
output VALET_UPLOADS_TOPIC_NAME string = app.outputs.uploadsTopicName
output VALET_MALWARE_TOPIC_NAME string = app.outputs.malwareTopicName
output VALET_IDENTITY_CLIENT_ID string = app.outputs.identityClientId
