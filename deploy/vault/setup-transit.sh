#!/usr/bin/env bash
# Enables Transit and creates securemsg's keys, then loads the policies. Run once per Vault, as
# an administrator (VAULT_ADDR and a token with sys/mounts, sys/policies and transit/keys rights),
# before the services first start: their policies may read their key but not create it, so a
# service whose key is missing refuses to start and names the key.
# Idempotent: existing mounts and keys are left as they are (a key is never re-created).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mount=${TRANSIT_MOUNT:-transit}

if ! vault secrets list -format=json | grep -q "\"$mount/\""; then
  vault secrets enable -path="$mount" transit
fi

create_key() { # create_key NAME TYPE
  if vault read -format=json "$mount/keys/$1" >/dev/null 2>&1; then
    echo "key $1 exists"
    return
  fi
  vault write -f "$mount/keys/$1" type="$2" exportable=false allow_plaintext_backup=false
  # Never deletable: deleting a key crypto-shreds everything it wrapped. Shred one thread by
  # destroying its wrapped DEK instead.
  vault write "$mount/keys/$1/config" deletion_allowed=false
}

# DEK-wrapping keys (datakey/plaintext, decrypt, rewrap): AES-256-GCM.
create_key securemsg-messaging aes256-gcm96
create_key securemsg-attachment aes256-gcm96
create_key securemsg-notification aes256-gcm96
# No key for the audit service: it signs checkpoints with a key file (Secret audit-signing-key).
# Earlier versions of this script created securemsg-audit-checkpoint (ed25519); nothing uses it,
# and since keys are never deletable it simply stays where it exists.

for f in "$here"/policies/*.hcl; do
  vault policy write "$(basename "$f" .hcl)" "$f"
done
