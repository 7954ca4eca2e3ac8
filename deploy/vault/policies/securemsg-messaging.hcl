# securemsg-messaging: the messaging service's pods (Kubernetes auth role securemsg-messaging). It creates
# data-encryption keys under its own Transit key and unwraps them; it cannot rotate, configure,
# read, rewrap, export or delete any key, nor touch another service's key.
path "transit/datakey/plaintext/securemsg-messaging" {
  capabilities = ["update"]
}

path "transit/decrypt/securemsg-messaging" {
  capabilities = ["update"]
}
