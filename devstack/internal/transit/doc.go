// Package transit implements a Vault-compatible HTTP server for the dev stack: the subset of
// Vault's API the services use through github.com/hashicorp/vault/api, built on Vault's own key
// code (github.com/hashicorp/vault/sdk/helper/keysutil) and request machinery (sdk/framework,
// sdk/logical), so that ciphertexts ("vault:v<N>:<base64>"), status codes, JSON shapes and error
// texts match Vault's transit engine. It exists because no vault binary can be installed on the
// build machines; where one exists, the dev stack runs real Vault instead.
//
// Implemented:
//   - token auth: X-Vault-Token (or Authorization: Bearer) must equal the single root token;
//     anything else is 403 "permission denied".
//   - GET sys/health (no token, like Vault): always initialized, unsealed and active.
//   - sys/mounts: GET lists mounts; POST/PUT sys/mounts/<path> {"type":"transit"} enables a
//     transit engine at any path ("path is already in use at ..." is 400, as in Vault);
//     GET reads one; DELETE disables it and destroys its keys.
//   - transit (at every mount): keys (LIST, create, read, delete with deletion_allowed),
//     keys/<name>/config (min_decryption_version, min_encryption_version, deletion_allowed, ...),
//     keys/<name>/rotate, encrypt (creates the key when missing, as Vault does), decrypt, rewrap,
//     datakey/plaintext and datakey/wrapped; batch_input with per-item errors, reference,
//     partial_failure_response_code; context (derived keys), associated_data, key_version.
//     Key types: aes128-gcm96, aes256-gcm96 (default), chacha20-poly1305.
//   - persistence: with a data directory, mounts and key rings survive a restart (one JSON file,
//     replaced atomically on every change).
//   - key-store backup (snapshot.go, sys_snapshot.go): GET sys/storage/raft/snapshot returns
//     the whole storage as a checksummed gzip'd tar shaped like Vault's; POST
//     sys/storage/raft/snapshot restores one taken by this key store, snapshot-force any valid
//     one (into a fresh server). A restore verifies everything first, refuses a damaged snapshot
//     with a 400 and changes nothing, and replaces the whole state atomically on disk. So
//     api.Sys().RaftSnapshot and RaftSnapshotRestore work unchanged, as against Vault with
//     integrated storage.
//
// Not implemented: other engines and auth methods, ACL policies and other tokens, leases,
// response wrapping, seal/unseal (the key file is not encrypted: it is a dev tool only), audit
// devices, namespaces, asymmetric, HMAC and managed keys, sign/verify, hmac, hash, random,
// export, per-key backup/restore (transit/backup), trim, import/BYOK, cache config, keys
// config of the engine (config/keys), automatic rotation (auto_rotate_period is stored but
// never acted on), the rest of sys/storage/raft (peers, autopilot, automated snapshots).
package transit
