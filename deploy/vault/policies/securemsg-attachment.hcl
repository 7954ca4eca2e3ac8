# securemsg-attachment: the attachment service's pods (Kubernetes auth role securemsg-attachment). It creates
# data-encryption keys under its own Transit key and unwraps them; it cannot rotate, configure,
# read, rewrap, export or delete any key, nor touch another service's key.
path "transit/datakey/plaintext/securemsg-attachment" {
  capabilities = ["update"]
}

path "transit/decrypt/securemsg-attachment" {
  capabilities = ["update"]
}
