# securemsg-keys-rewrap: the rewrap job (Kubernetes auth role securemsg-keys-rewrap, the
# keys-rewrap component). Transit rewrap returns ciphertext under the latest key version without
# releasing plaintext; reading the key gives the latest version for the coverage report.
path "transit/rewrap/securemsg-messaging" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-messaging" {
  capabilities = ["read"]
}

path "transit/rewrap/securemsg-attachment" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-attachment" {
  capabilities = ["read"]
}

path "transit/rewrap/securemsg-notification" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-notification" {
  capabilities = ["read"]
}
