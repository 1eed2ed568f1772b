#!/bin/sh
# azd postdown hook (azure.yaml), after `azd down` has deleted the resource group. The Key Vault is now
# soft-deleted, and with purge protection its name stays reserved until the retention period (90 days) ends:
# azd purges only vaults without purge protection, and no one can purge this one early. Emptying
# VALET_VAULT_GENERATION makes the next `azd up` (preprovision) pick a new one, so the new vault gets a new name.
# The secrets stay in the azd environment, so the new vault holds the same grant-signing keys and pepper.
set -eu

azd env set VALET_VAULT_GENERATION ""
echo "valet: the soft-deleted Key Vault keeps its name until its retention ends; the next azd up makes a new one"
