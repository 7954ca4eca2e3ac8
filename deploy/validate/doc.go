// Package validate holds the offline checks of the Kubernetes, NATS and Vault configuration
// under deploy/: its tests build every kustomize overlay in-process, decode every object
// strictly and check the security rules the suite promises (see docs/operations.md).
package validate
