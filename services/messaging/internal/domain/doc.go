// Package domain holds the messaging service's types and rules: threads, messages, their
// lifecycle and limits, retention, the refusals the service answers with (errors.go), and the
// interfaces the use cases need from the world — the repositories (repository.go), which hide
// Postgres and its transactions, and the gateways (gateways.go) to the key service, the policy
// engine and the attachment service. It does no I/O.
package domain
