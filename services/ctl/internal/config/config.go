// Package config reads securemsgctl's settings from SECUREMSG_* environment variables. It is the
// only package of the CLI that reads the environment; commands use the values as flag
// defaults, so a flag always wins over the environment.
package config

import "os"

// Env holds the environment's settings for securemsgctl.
type Env struct {
	VaultAddr       string // SECUREMSG_VAULT_ADDR (default http://127.0.0.1:8200)
	VaultToken      string // SECUREMSG_VAULT_TOKEN; never shown in --help or logs
	VaultCACert     string // SECUREMSG_VAULT_CACERT
	VaultServerName string // SECUREMSG_VAULT_SERVER_NAME
	VaultK8sRole    string // SECUREMSG_VAULT_K8S_ROLE (Kubernetes auth, e.g. in a Job)
	VaultK8sMount   string // SECUREMSG_VAULT_K8S_MOUNT (default kubernetes)
	TransitMount    string // SECUREMSG_VAULT_TRANSIT_MOUNT (default transit)
	PostgresURL     string // SECUREMSG_PG_URL, for pg: stores
}

// Load reads the environment.
func Load() Env {
	return Env{
		VaultAddr:       get("SECUREMSG_VAULT_ADDR", "http://127.0.0.1:8200"),
		VaultToken:      get("SECUREMSG_VAULT_TOKEN", ""),
		VaultCACert:     get("SECUREMSG_VAULT_CACERT", ""),
		VaultServerName: get("SECUREMSG_VAULT_SERVER_NAME", ""),
		VaultK8sRole:    get("SECUREMSG_VAULT_K8S_ROLE", ""),
		VaultK8sMount:   get("SECUREMSG_VAULT_K8S_MOUNT", "kubernetes"),
		TransitMount:    get("SECUREMSG_VAULT_TRANSIT_MOUNT", "transit"),
		PostgresURL:     get("SECUREMSG_PG_URL", "postgres://postgres@127.0.0.1:5432/securemsg?sslmode=disable"),
	}
}

func get(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}
