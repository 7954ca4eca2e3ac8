# securemsg-audit: the audit service's pods (Kubernetes auth role securemsg-audit). When
# checkpoint signing through Vault is configured it signs and verifies with the audit checkpoint
# key and reads the key's public half for offline verification; nothing else.
path "transit/sign/securemsg-audit-checkpoint" {
  capabilities = ["update"]
}

path "transit/verify/securemsg-audit-checkpoint" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-audit-checkpoint" {
  capabilities = ["read"]
}
