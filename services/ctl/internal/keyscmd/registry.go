package keyscmd

import (
	"slices"
	"strings"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

// ServiceKeys is one service's Transit key and the tables that hold the DEKs it wraps: what
// --service stands for, what `keys status` reports, and what the rewrap CronJobs
// (deploy/k8s/components/keys-rewrap) must name. TestRegistryMatchesSchemasAndDeploy checks
// every store against the services' migrated schemas and the CronJobs against this list.
type ServiceKeys struct {
	// Service is the service's name, also its Postgres schema.
	Service string
	// Key is the Transit key's default name; KeyEnv the variable that renames it.
	Key, KeyEnv string
	// Stores are the tables holding wrapped DEKs under Key, as pg: store specs.
	Stores []keys.PGStoreSpec
}

// Registry lists every service key, by service name. The audit service has none: it signs its
// checkpoints with a key file, and wraps nothing under Transit.
var Registry = []ServiceKeys{
	{Service: "messaging", Key: "securemsg-messaging", KeyEnv: "SECUREMSG_MESSAGING_TRANSIT_KEY", Stores: []keys.PGStoreSpec{
		// Each thread's DEK seals its subject, messages and transfer note.
		{Schema: "messaging", Table: "threads", IDColumn: "id", WrappedColumn: "wrapped_dek"},
		// Each person's DEK seals their display name (the directory's records).
		{Schema: "messaging", Table: "people", IDColumn: "subject", WrappedColumn: "wrapped_dek"},
	}},
	{Service: "attachment", Key: "securemsg-attachment", KeyEnv: "SECUREMSG_ATTACHMENT_TRANSIT_KEY", Stores: []keys.PGStoreSpec{
		// Each attachment's DEK seals its object and its file name.
		{Schema: "attachment", Table: "attachments", IDColumn: "id", WrappedColumn: "wrapped_dek"},
	}},
	{Service: "notification", Key: "securemsg-notification", KeyEnv: "SECUREMSG_NOTIFY_TRANSIT_KEY", Stores: []keys.PGStoreSpec{
		// Each person's DEK seals their contact points (e-mail address, phone number).
		{Schema: "notification", Table: "person_keys", IDColumn: "subject", WrappedColumn: "wrapped_dek"},
	}},
}

// Lookup returns the registry entry of service.
func Lookup(service string) (ServiceKeys, bool) {
	i := slices.IndexFunc(Registry, func(s ServiceKeys) bool { return s.Service == service })
	if i < 0 {
		return ServiceKeys{}, false
	}
	return Registry[i], true
}

// ServiceNames lists the registry's services, for help texts and errors.
func ServiceNames() string {
	names := make([]string, len(Registry))
	for i, s := range Registry {
		names[i] = s.Service
	}
	return strings.Join(names, ", ")
}

// StoreFlags are the entry's stores as --store values.
func (s ServiceKeys) StoreFlags() []string {
	out := make([]string, len(s.Stores))
	for i, st := range s.Stores {
		out[i] = st.String()
	}
	return out
}
