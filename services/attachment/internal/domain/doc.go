// Package domain holds the attachment service's types and rules: attachments and their scan
// and lifecycle states, file-name neutralisation, the media-type allow-list, upload limits, the
// refusals the service answers with (refusals.go), and the interfaces the use cases need from
// the world — the repository (repository.go), which hides Postgres and its transactions, and
// the gateways (gateways.go) to object storage, the malware scanner, the messaging service's
// access decisions and the key service. It does no I/O.
package domain
