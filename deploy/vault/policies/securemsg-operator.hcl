# securemsg-operator: people running securemsgctl keys rotate|rewrap|coverage|status|retire.
# Attach it to the operators' own login (OIDC group, for example), never to a pod. It can rotate
# keys, raise min_decryption_version (config), read key metadata and rewrap the three DEK-wrapping
# keys; it cannot decrypt, create data keys, export or delete keys (segregation of duties: key
# custody is not data access).
path "transit/keys/securemsg-messaging" {
  capabilities = ["read"]
}

path "transit/keys/securemsg-messaging/rotate" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-messaging/config" {
  capabilities = ["update"]
}

path "transit/rewrap/securemsg-messaging" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-attachment" {
  capabilities = ["read"]
}

path "transit/keys/securemsg-attachment/rotate" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-attachment/config" {
  capabilities = ["update"]
}

path "transit/rewrap/securemsg-attachment" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-notification" {
  capabilities = ["read"]
}

path "transit/keys/securemsg-notification/rotate" {
  capabilities = ["update"]
}

path "transit/keys/securemsg-notification/config" {
  capabilities = ["update"]
}

path "transit/rewrap/securemsg-notification" {
  capabilities = ["update"]
}
