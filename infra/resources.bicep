// Every resource valet needs, in one resource group. Least privilege: the app's one identity gets exactly the
// role assignments listed under "Role assignments" below, each at the narrowest scope Azure allows for it; the
// table in docs/deployment.md says why each exists, and tests/infra/test_bicep.py pins the set.

@description('azd environment name.')
param environmentName string

@description('Region of every resource.')
param location string

@description('Tags for every resource.')
param tags object

@secure()
@description('VALET_GRANT_SIGNING_KEYS (stored in Key Vault only).')
param grantSigningKeys string

@secure()
@description('VALET_APIKEY_PEPPER (stored in Key Vault only).')
param apiKeyPepper string

@description('VALET_AUTH_ISSUERS: the trusted token issuers (docs/authentication.md); the app setting is this list as JSON.')
param authIssuers array = []

@description('Changes the Key Vault name when the azd environment is deployed again after `azd down` (VALET_VAULT_GENERATION, made by the preprovision hook, cleared by the postdown hook): the old vault stays soft-deleted under purge protection, and its name cannot be reused until its retention ends.')
@minLength(1)
param vaultGeneration string

@description('Exact browser origins (https://host[:port]) allowed to call the API (VALET_CORS_ORIGINS, answered by valet itself) and PUT uploads to storage (the account\'s CORS rule). Empty by default: no CORS. Never "*": an upload URL is a credential.')
param corsOrigins array = []

@description('Microsoft Defender for Storage on-upload malware scanning of the uploads account.')
param enableMalwareScanning bool = false

@description('Largest number of GB Defender scans per month (-1: no cap).')
param malwareScanningCapGBPerMonth int = 100

@description('Object id of a user or group that may manage API keys (read/write on the key container only). Empty: nobody.')
param keysAdminPrincipalId string = ''

@description('Most instances the Flex Consumption plan may scale out to.')
param maximumInstanceCount int = 100

@description('Replication of the uploads account: geo-redundant (GZRS where the region offers it, else GRS).')
@allowed([
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSku string = 'Standard_GZRS'

@description('Days every audit record is kept unchangeable (the audit container\'s time-based immutability policy; appends stay allowed). Shortening it later is not possible once the policy is locked.')
@minValue(1)
@maxValue(146000)
param auditRetentionDays int = 90

var token = toLower(uniqueString(subscription().id, environmentName, location))
// A new vault name per vault generation (see vaultGeneration); always 'kv-valet-' + 13 characters.
var vaultToken = toLower(uniqueString(subscription().id, environmentName, location, vaultGeneration))
var storageSuffix = environment().suffixes.storage

// Containers of the uploads account (the app's settings below name the same values).
var uploadsContainerName = 'uploads'
var acceptedContainerName = 'accepted'
var quarantineContainerName = 'quarantine'
var apiKeysContainerName = 'valet-apikeys'
var auditContainerName = 'audit'
// The blob trigger writes a message here after its last retry (on the account its connection names).
var poisonQueueName = 'webjobs-blobtrigger-poison'
var decisionQueueName = 'valet-decisions'
// The quota store (valet/quotas/): one table, one partition per tenant and profile.
var quotaTableName = 'valetquotas'
var deploymentContainerName = 'app-package'
// The connection name prefix of the blob trigger (VALET_TRIGGER_CONNECTION).
var triggerConnection = 'ValetStorage'

// Storage CORS for browser uploads: the same rule valet/cors.py applies to the emulator (a test compares them).
var corsRules = empty(corsOrigins) ? [] : [
  {
    allowedOrigins: corsOrigins
    allowedMethods: [
      'PUT'
      'OPTIONS'
    ]
    allowedHeaders: [
      'x-ms-blob-type'
      'x-ms-blob-content-type'
      'x-ms-meta-*'
      'x-ms-version'
      'content-type'
      'content-length'
    ]
    exposedHeaders: [
      'x-ms-request-id'
      'x-ms-error-code'
      'etag'
      'last-modified'
    ]
    maxAgeInSeconds: 3600
  }
]

// Built-in role definitions (ids are the same in every tenant).
var roles = {
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageTableDataContributor: '0a6a572e-d87b-40b0-9f2b-2dde5f6d6c46'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------------------
// Identity: one user-assigned identity, so every role assignment exists before the app first starts.
// ---------------------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-valet-${token}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------------
// Uploads storage account: uploads / accepted / quarantine and the API key records. Clients PUT straight to it
// with user-delegation SAS, so it must be reachable from the internet; nothing on it accepts an account key.
// ---------------------------------------------------------------------------------------------------------

resource uploadsAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Clients upload from the internet with a SAS (the valet-key pattern); a deny-by-default firewall would refuse them.
  // checkov:skip=CKV_AZURE_59: Public network access is the product (clients PUT from anywhere); every request still needs Entra ID or a user-delegation SAS.
  // checkov:skip=CKV_AZURE_43: checkov cannot evaluate uniqueString(); the name is 'stvalet' + 13 lower-case letters and digits (20 characters), which tests/infra/test_bicep.py checks.
  name: 'stvalet${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource uploadsBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: uploadsAccount
  name: 'default'
  properties: {
    cors: {
      corsRules: corsRules
    }
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource uploadsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: uploadsBlobService
  name: uploadsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource acceptedContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: uploadsBlobService
  name: acceptedContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource quarantineContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: uploadsBlobService
  name: quarantineContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource apiKeysContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: uploadsBlobService
  name: apiKeysContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The audit trail (docs/design.md, "The audit trail"): append blobs only the app adds to, kept unchangeable for
// auditRetentionDays by a time-based immutability policy that allows protected appends (Append Block on
// append blobs) and nothing else: no overwrite, no delete, no metadata change, by anyone, until a record is
// that old. The policy is created unlocked (Azure's default for a new policy): lock it once the retention is
// right (docs/deployment.md, "The audit trail"), after which it can be extended but never shortened or removed.
resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: uploadsBlobService
  name: auditContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource auditImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: auditContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditRetentionDays
    allowProtectedAppendWrites: true
  }
}

resource uploadsQueueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: uploadsAccount
  name: 'default'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: uploadsQueueService
  name: poisonQueueName
}

// One message per decision for the owner's backend (valet/validation/events.py); the app only adds messages.
resource decisionQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: uploadsQueueService
  name: decisionQueueName
}

resource uploadsTableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: uploadsAccount
  name: 'default'
}

// Quota counters and the grants that reserved quota (docs/design.md, "Quotas: exact across instances").
resource quotaTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: uploadsTableService
  name: quotaTableName
}

// Backstop for expired tombstones. The timer function `sweep_tombstones` removes them minutes after they
// expire; this rule deletes any it missed. Lifecycle rules can only test tags for equality, so the rule waits
// 2 days after the tombstone's last write: longer than the longest SAS (60 min) plus the longest grace (24 h).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: uploadsAccount
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'valet-expired-tombstones'
          type: 'Lifecycle'
          definition: {
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 2
                }
              }
            }
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${uploadsContainerName}/'
              ]
              blobIndexMatch: [
                {
                  name: 'valetstate'
                  op: '=='
                  value: 'tombstone'
                }
              ]
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    uploadsContainer
  ]
}

// ---------------------------------------------------------------------------------------------------------
// Host storage account: the Functions host's own data (deployment package, leases, blob receipts, keys, the
// blob trigger's internal queue). Kept apart so the host's broad needs there reach no upload.
// ---------------------------------------------------------------------------------------------------------

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: A Flex Consumption app without virtual network integration reaches its host storage over the public endpoint; access is Entra ID only.
  // checkov:skip=CKV_AZURE_59: The Flex Consumption app (no virtual network) reaches host storage over the public endpoint; access is Entra ID only.
  // checkov:skip=CKV_AZURE_43: checkov cannot evaluate uniqueString(); the name is 'stfunc' + 13 lower-case letters and digits (19 characters).
  // checkov:skip=CKV_AZURE_206: Only the host's own data is here (deployment package, leases, receipts, keys); it is rebuilt by the next deployment, so zone redundancy is enough.
  name: 'stfunc${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource hostBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostAccount
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// ---------------------------------------------------------------------------------------------------------
// Key Vault: the grant-signing keys and the API-key pepper. The app reads them through Key Vault references;
// no client ever sees them.
// ---------------------------------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: A Flex Consumption app without virtual network integration resolves Key Vault references over the public endpoint; access is Entra ID RBAC only, per secret.
  // checkov:skip=CKV_AZURE_189: The Flex Consumption app (no virtual network) resolves Key Vault references over the public endpoint; access is RBAC per secret.
  name: 'kv-valet-${vaultToken}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource grantKeysSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Rotation is a key ring (a new key first, the old one kept until its uploads are decided); a Key Vault expiry would stop every grant and validation at once instead.
  parent: vault
  name: 'valet-grant-signing-keys'
  properties: {
    value: grantSigningKeys
    contentType: 'text/plain; format=keyId:base64urlKey[,keyId:base64urlKey]'
  }
}

resource pepperSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: The pepper keys every stored API key hash; an expiry would invalidate every API key at once. Rotate by issuing new keys.
  parent: vault
  name: 'valet-apikey-pepper'
  properties: {
    value: apiKeyPepper
    contentType: 'text/plain; format=base64url'
  }
}

// ---------------------------------------------------------------------------------------------------------
// Monitoring: Application Insights on a Log Analytics workspace, ingestion with Entra ID only.
// ---------------------------------------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-valet-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 90
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-valet-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------------------
// The function app: Flex Consumption, Python 3.11, the user-assigned identity for everything.
// ---------------------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions; turn on zoneRedundant where yours offers it.
  name: 'plan-valet-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// The app settings valet's settings loader reads (tests/infra/test_app_settings.py compares them with
// valet/settings.py). Secrets are Key Vault references, resolved by the platform with the identity.
var valetSettings = {
  VALET_STORAGE_ACCOUNT_URL: 'https://${uploadsAccount.name}.blob.${storageSuffix}'
  VALET_STORAGE_CREDENTIAL: 'managedidentity'
  VALET_STORAGE_CLIENT_ID: identity.properties.clientId
  VALET_UPLOADS_CONTAINER: uploadsContainerName
  VALET_ACCEPTED_CONTAINER: acceptedContainerName
  VALET_QUARANTINE_CONTAINER: quarantineContainerName
  VALET_APIKEY_CONTAINER: apiKeysContainerName
  VALET_AUDIT_CONTAINER: auditContainerName
  VALET_QUEUE_SERVICE_URL: 'https://${uploadsAccount.name}.queue.${storageSuffix}'
  VALET_DECISION_QUEUE: decisionQueueName
  VALET_TABLE_SERVICE_URL: 'https://${uploadsAccount.name}.table.${storageSuffix}'
  VALET_QUOTA_TABLE: quotaTableName
  VALET_GRANT_SIGNING_KEYS: '@Microsoft.KeyVault(SecretUri=${grantKeysSecret.properties.secretUri})'
  VALET_APIKEY_PEPPER: '@Microsoft.KeyVault(SecretUri=${pepperSecret.properties.secretUri})'
  VALET_AUTH_ISSUERS: string(authIssuers)
  VALET_CORS_ORIGINS: join(corsOrigins, ',')
  VALET_TRIGGER_SOURCE: 'EventGrid'
  VALET_TRIGGER_CONNECTION: triggerConnection
  VALET_SCANNERS: enableMalwareScanning ? 'defender' : 'none'
}

// What the Functions host itself needs: identity-based host storage, the blob trigger's connection (named by
// VALET_TRIGGER_CONNECTION), Application Insights with Entra ID authentication, and OpenTelemetry
// (docs/telemetry.md): host.json's telemetryMode sends the host's logs and traces as OpenTelemetry;
// PYTHON_ENABLE_OPENTELEMETRY makes the Python worker pass the host's trace context to the app and stop
// piping the app's logs to the host, because the app exports them itself (valet/telemetry/setup.py, with the
// identity in APPLICATIONINSIGHTS_AUTHENTICATION_STRING): one path per record, no duplicates. Never
// PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY as well: the worker would configure a second exporter.
var hostSettings = {
  AzureWebJobsStorage__blobServiceUri: 'https://${hostAccount.name}.blob.${storageSuffix}'
  AzureWebJobsStorage__queueServiceUri: 'https://${hostAccount.name}.queue.${storageSuffix}'
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  ValetStorage__blobServiceUri: 'https://${uploadsAccount.name}.blob.${storageSuffix}'
  ValetStorage__queueServiceUri: 'https://${uploadsAccount.name}.queue.${storageSuffix}'
  ValetStorage__credential: 'managedidentity'
  ValetStorage__clientId: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: Clients are browsers, phones and services holding bearer tokens or API keys, not client certificates.
  // checkov:skip=CKV_AZURE_222: The API is public by design (clients on the internet ask it for upload grants).
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no fixed worker count (numberOfWorkers); it adds instances per demand.
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP or FTPS at all, and Microsoft lists siteConfig.ftpsState among the properties a Flex Consumption app must not set (tests/infra/test_flex.py).
  // checkov:skip=CKV_AZURE_213: Flex Consumption replaces unhealthy instances itself; valet's GET /api/health serves callers and probes and is not wired as an App Service health check.
  name: 'func-valet-${token}'
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: 'https://${hostAccount.name}.blob.${storageSuffix}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
    }
    // No ftpsState: Flex Consumption has no FTP(S) and lists the property as deprecated (tests/infra/test_flex.py).
    // No platform CORS (siteConfig.cors): valet answers CORS itself for VALET_CORS_ORIGINS, and App Service
    // CORS, once configured, would answer in its place.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
  }
  dependsOn: [
    // The identity must hold its roles before the host first starts (deployment package, host storage,
    // Key Vault references).
    hostBlobOwner
    hostQueueContributor
    grantKeysReader
    pepperReader
    telemetryPublisher
  ]
}

// The app settings: one `appsettings` config child with the merged objects (the pattern of azd's template module
// core/host/appservice.bicep). Azure replaces the app's settings with exactly this set. (A `for` loop over these variables would not compile: they read runtime values, such as the
// identity's client id and the secrets' URIs, and a `for` expression must be computable when the deployment
// starts, BCP178; tests/infra/test_bicep.py checks every `for` expression for that.)
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads every sites/config child as the site's web configuration; this one ('appsettings') holds app settings only:
  // checkov:skip=CKV_AZURE_13: valet authenticates every request itself (bearer tokens or API keys, docs/authentication.md); App Service authentication would stand in front of the public upload page and health route.
  // checkov:skip=CKV_AZURE_63: HTTP logs are an App Service file-system feature; the app logs to Application Insights with Entra ID (the APPLICATIONINSIGHTS_* settings below).
  // checkov:skip=CKV_AZURE_65: Detailed error pages are an App Service file-system feature; valet answers every error as problem+json and logs to Application Insights.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is an App Service file-system feature; requests are traced in Application Insights.
  // checkov:skip=CKV_AZURE_80: A Python 3.11 app (functionAppConfig.runtime); there is no .NET Framework version to keep current.
  // checkov:skip=CKV_AZURE_88: Flex Consumption runs the package from a blob container (functionAppConfig.deployment) and mounts no Azure Files share.
  // checkov:skip=CKV_AZURE_222: The API is public by design (clients on the internet ask it for upload grants); this resource sets no network property.
  parent: functionApp
  name: 'appsettings'
  properties: union(valetSettings, hostSettings)
}

// ---------------------------------------------------------------------------------------------------------
// Event Grid: the uploads account's system topic (BlobCreated -> the blob trigger) and, with malware scanning,
// Defender for Storage and the custom topic it sends scan results to (malware.bicep). The subscriptions themselves are in eventgrid.bicep: their
// webhook URLs carry the app's extension keys, which exist only once the app's code has started.
// ---------------------------------------------------------------------------------------------------------

resource uploadsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-valet-uploads-${token}'
  location: location
  tags: tags
  properties: {
    source: uploadsAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// An account can have only one Event Grid system topic, and turning on Defender's on-upload scanning creates a
// system topic for the account (Microsoft's malware scanning docs). Deployed in parallel, Defender's could come
// first and this template's would then fail; so Defender is turned on only once this topic exists. (That Defender
// then uses the existing topic is what a first deployment must confirm: docs/deployment.md.)
module malwareScanning 'malware.bicep' = if (enableMalwareScanning) {
  name: 'valet-malware-scanning'
  params: {
    location: location
    tags: tags
    topicName: 'evgt-valet-malware-${token}'
    storageAccountName: uploadsAccount.name
    capGBPerMonth: malwareScanningCapGBPerMonth
  }
  dependsOn: [
    uploadsTopic
  ]
}

// ---------------------------------------------------------------------------------------------------------
// Role assignments. Principal: the app's identity, except the optional API key administrator at the end.
// ---------------------------------------------------------------------------------------------------------

// Blob index tags are a sub-resource with their own permissions, which Storage Blob Data Contributor does
// not include (only Storage Blob Data Owner does, with much more). The validator writes its decision record
// as tags, reads Defender's verdict tag and finds expired tombstones by tag.
resource blobTagsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'valet-blob-index-tags')
  properties: {
    // The display name must be unique in the tenant, and one tenant can hold the same environment (so the same
    // resource group name) in several subscriptions.
    roleName: 'valet blob index tags (${subscription().subscriptionId}, ${resourceGroup().name})'
    description: 'Read, write and find blob index tags; nothing else. Assigned on the containers valet decides uploads in.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// The audit container: read, create a blob and append to it; no delete (not even of blob versions) and no
// immutability super-user action. blobs/write stays because Put Blob of a new append blob needs it; the
// immutability policy refuses every overwrite whatever the role says.
resource auditAppendRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'valet-audit-append')
  properties: {
    roleName: 'valet audit append (${subscription().subscriptionId}, ${resourceGroup().name})'
    description: 'Read blobs, create blobs and append blocks; no delete. Assigned on the audit container only.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource auditAppender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditContainer.id, identity.id, auditAppendRole.id)
  scope: auditContainer
  properties: {
    roleDefinitionId: auditAppendRole.id
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// User delegation keys: Get User Delegation Key is an account-level operation, so the account is the
// narrowest scope. A SAS signed with the key can never do more than the signer's own data roles allow.
resource delegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(uploadsAccount.id, identity.id, roles.storageBlobDelegator)
  scope: uploadsAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDelegator)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// uploads: the SAS's create permission (the signer's write), reading heads and hashes, tombstones, the sweep.
resource uploadsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(uploadsContainer.id, identity.id, roles.storageBlobDataContributor)
  scope: uploadsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource uploadsTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(uploadsContainer.id, identity.id, blobTagsRole.id)
  scope: uploadsContainer
  properties: {
    roleDefinitionId: blobTagsRole.id
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// accepted: server-side copies in (with record tags), moved out again on a late malware verdict.
resource acceptedContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acceptedContainer.id, identity.id, roles.storageBlobDataContributor)
  scope: acceptedContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource acceptedTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acceptedContainer.id, identity.id, blobTagsRole.id)
  scope: acceptedContainer
  properties: {
    roleDefinitionId: blobTagsRole.id
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// quarantine: server-side copies in (with record tags), status reads.
resource quarantineContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(quarantineContainer.id, identity.id, roles.storageBlobDataContributor)
  scope: quarantineContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource quarantineTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(quarantineContainer.id, identity.id, blobTagsRole.id)
  scope: quarantineContainer
  properties: {
    roleDefinitionId: blobTagsRole.id
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// valet-apikeys: the app only looks key records up; `valet keys` (an operator) writes them.
resource apiKeysReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(apiKeysContainer.id, identity.id, roles.storageBlobDataReader)
  scope: apiKeysContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The blob trigger's poison queue lives on the account its connection names.
resource poisonQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, identity.id, roles.storageQueueDataContributor)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Decision events: add messages to the one decision queue, nothing else (no reading, no other queue).
resource decisionQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(decisionQueue.id, identity.id, roles.storageQueueDataMessageSender)
  scope: decisionQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Quotas: read and write entities of the one quota table, nothing else (no other table, no table management).
resource quotaTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(quotaTable.id, identity.id, roles.storageTableDataContributor)
  scope: quotaTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Host storage (AzureWebJobsStorage): the roles Microsoft documents for an identity-based host connection,
// on an account that holds nothing but the host's own data.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, identity.id, roles.storageBlobDataOwner)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, identity.id, roles.storageQueueDataContributor)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references: read access to the two secrets, each scoped to its secret, not the vault.
resource grantKeysReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(grantKeysSecret.id, identity.id, roles.keyVaultSecretsUser)
  scope: grantKeysSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource pepperReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(pepperSecret.id, identity.id, roles.keyVaultSecretsUser)
  scope: pepperSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights with local authentication off: telemetry is sent with the identity.
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Optional: an operator who runs `valet keys` against Azure (create, rotate, revoke API keys).
resource keysAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(keysAdminPrincipalId)) {
  name: guid(apiKeysContainer.id, keysAdminPrincipalId, roles.storageBlobDataContributor)
  scope: apiKeysContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: keysAdminPrincipalId
  }
}

output functionAppName string = functionApp.name
output apiUrl string = 'https://${functionApp.properties.defaultHostName}'
output keyVaultName string = vault.name
output storageAccountName string = uploadsAccount.name
output storageAccountUrl string = 'https://${uploadsAccount.name}.blob.${storageSuffix}'
output uploadsContainer string = uploadsContainerName
output uploadsTopicName string = uploadsTopic.name
output malwareTopicName string = enableMalwareScanning ? malwareScanning.outputs.topicName : ''
output identityClientId string = identity.properties.clientId
