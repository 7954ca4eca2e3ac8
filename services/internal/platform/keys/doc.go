// Package keys manages data-encryption keys (DEKs) through Vault's Transit secrets engine, using
// only github.com/hashicorp/vault/api: it creates DEKs (transit/datakey/plaintext), unwraps them
// (transit/decrypt), rewraps them in batches after a rotation (transit/rewrap; no plaintext
// leaves Vault), rotates keys, reads key versions and raises min_decryption_version.
//
// At start a service checks its Transit key exists (OpenTransit, EnsureKey): it reads the key
// and creates it only when it is missing and the token may create keys (dev, tests); in
// production an operator creates the keys and the services' policies only read them.
//
// Services use a Keyring: NewDEK for a new thread or object, OpenDEK to unwrap a stored DEK
// through a bounded cache (entries and age) that makes one Vault call per miss, however many
// callers miss at once, and zeroes its plaintext copies on eviction. Only the wrapped form
// (`vault:vN:...`) is ever stored; destroying it crypto-shreds everything sealed under the DEK.
// A service that creates many objects puts a DEKPool in front of its Keyring: it makes a few
// DEKs ahead in the background, so creating an object costs no Vault call on the request path,
// and hands each one out once.
//
// # Authentication and TLS
//
// Config selects token auth (dev, tests, operators) or Kubernetes auth (production): the
// service account's JWT (by default /var/run/secrets/kubernetes.io/serviceaccount/token, read
// anew at every login because projected tokens rotate) is written with Config.KubernetesRole
// to auth/<KubernetesMount>/login; the returned client token is used until Vault answers 403,
// when the Transit client logs in again once and retries. Vault's TLS certificate is checked
// against Config.CACert (a PEM file) when set, else the system roots, with Config.ServerName
// as SNI and verification name when Vault is reached by an address its certificate lacks.
//
// # Errors
//
// Connection failures, timeouts, 5xx (a sealed or standby Vault answers 503) and 429 are
// ErrKeyServiceUnavailable (callers: codes.Unavailable; fail closed). A ciphertext under a key
// version below min_decryption_version is ErrKeyVersionRetired (codes.FailedPrecondition). A
// missing Transit key is ErrKeyNotFound. Other 4xx answers become an error naming the operation
// and status; Vault's messages are passed on with anything that looks like key material or
// ciphertext removed, and no request data is ever echoed.
//
// # Rotation and rewrap
//
// A store that holds wrapped DEKs implements WrappedKeyStore (PGStore does it for any Postgres
// table given its schema, table, id and wrapped-key columns). Rewrapper walks stores in
// batches, resumable from a checkpoint file, with a dry run; Coverage reports per store how many
// wrapped DEKs sit on each key version and the share on the latest, which must reach 100%
// before min_decryption_version may rise (securemsgctl keys retire enforces it).
package keys
