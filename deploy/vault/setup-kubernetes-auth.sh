#!/usr/bin/env bash
# Enables Vault's Kubernetes auth method and binds each securemsg service account to its policy.
# Run after setup-transit.sh, as an administrator. Needs:
#   KUBERNETES_HOST   the API server URL as Vault reaches it (https://...)
#   KUBERNETES_CA     file with the API server's CA certificate
#   REVIEWER_JWT      file with the vault-token-reviewer token (omit when Vault runs in the cluster
#                     and uses its own service account for TokenReview)
#   NAMESPACE         the namespace the overlay deploys to (default securemsg)
# The pods present projected tokens with audience "vault" (components/vault-kubernetes-auth), so
# each role requires that audience: a token stolen for another audience does not log in.
set -euo pipefail
mount=${K8S_AUTH_MOUNT:-kubernetes}
ns=${NAMESPACE:-securemsg}

if ! vault auth list -format=json | grep -q "\"$mount/\""; then
  vault auth enable -path="$mount" kubernetes
fi
reviewer=()
if [[ -n ${REVIEWER_JWT:-} ]]; then
  reviewer=(token_reviewer_jwt=@"$REVIEWER_JWT")
fi
vault write "auth/$mount/config" kubernetes_host="$KUBERNETES_HOST" \
  kubernetes_ca_cert=@"$KUBERNETES_CA" "${reviewer[@]}"

# role NAME SERVICE_ACCOUNT POLICY: one line per role, checked by deploy/validate against the
# service accounts the overlays render and the policies in policies/.
role() {
  vault write "auth/$mount/role/$1" bound_service_account_names="$2" \
    bound_service_account_namespaces="$ns" audience=vault token_policies="$3" \
    token_ttl=1h token_max_ttl=4h token_no_default_policy=true
}
role securemsg-messaging messaging securemsg-messaging
role securemsg-attachment attachment securemsg-attachment
role securemsg-notification notification securemsg-notification
# No role for audit: it signs checkpoints with the Ed25519 key in Secret audit-signing-key and
# never calls Vault, so it gets no Vault identity at all.
role securemsg-keys-rewrap keys-rewrap securemsg-keys-rewrap
