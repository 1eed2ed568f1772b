// The Event Grid subscriptions, deployed by infra/hooks/postdeploy.sh after `azd deploy` has published the
// code. They cannot be in main.bicep: a subscription's webhook URL carries one of the app's system keys
// (blobs_extension, eventgrid_extension), which the host creates only once it has started with the functions
// that need them, and Event Grid validates the endpoint while creating the subscription.

@description('Name of the function app (output AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('Name of the uploads account\'s Event Grid system topic (output VALET_UPLOADS_TOPIC_NAME).')
param uploadsTopicName string

@description('Container the blob trigger watches (output VALET_UPLOADS_CONTAINER).')
param uploadsContainer string = 'uploads'

@description('Name of the custom topic Defender sends scan results to (output VALET_MALWARE_TOPIC_NAME); empty when malware scanning is off.')
param malwareTopicName string = ''

// The function names in function_app.py.
var blobTriggerFunction = 'validate_upload'
var malwareFunction = 'malware_scan_result'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: functionApp
  name: 'default'
}

resource uploadsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: uploadsTopicName
}

resource malwareTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = if (!empty(malwareTopicName)) {
  name: malwareTopicName
}

// New blobs in the uploads container -> the blob trigger's Event Grid endpoint (source: EventGrid).
resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: uploadsTopic
  name: 'valet-validate-upload'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${blobTriggerFunction}&code=${functionHost.listKeys().systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${uploadsContainer}/blobs/'
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

// Defender's scan results -> the Event Grid trigger malware_scan_result.
resource scanResults 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = if (!empty(malwareTopicName)) {
  parent: malwareTopic
  name: 'valet-malware-scan-result'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/EventGrid?functionName=${malwareFunction}&code=${functionHost.listKeys().systemKeys.eventgrid_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Security.MalwareScanningResult'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}
