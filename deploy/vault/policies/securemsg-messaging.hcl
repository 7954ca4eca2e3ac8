# securemsg-messaging: the messaging service's pods (Kubernetes auth role securemsg-messaging). It creates
# data-encryption keys under its own Transit key and unwraps them, and at start reads that key to
# check it exists (keys.EnsureKey). It cannot create, rotate, configure, rewrap, export or delete
# any key, nor touch another service's key: an operator creates the key (setup-transit.sh), and
# a pod whose key is missing refuses to start, naming the key.
path "transit/datakey/plaintext/securemsg-messaging" {
  capabilities = ["update"]
}

path "transit/decrypt/securemsg-messaging" {
  capabilities = ["update"]
}

# Key metadata only (type, versions); Transit never returns key material on this path unless
# the key is exportable, and setup-transit.sh creates it with exportable=false.
path "transit/keys/securemsg-messaging" {
  capabilities = ["read"]
}
