package keyscmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

// keyStatus is one key as `keys status --json` prints it: a line a script reads.
type keyStatus struct {
	Service              string        `json:"service,omitempty"`
	Key                  string        `json:"key"`
	Type                 string        `json:"type"`
	Versions             []int         `json:"versions"`
	LatestVersion        int           `json:"latest_version"`
	MinDecryptionVersion int           `json:"min_decryption_version"`
	MinEncryptionVersion int           `json:"min_encryption_version"`
	Stores               []storeStatus `json:"stores"`
	// Complete is true when every wrapped DEK of every store is on the latest version: the
	// versions below it may be retired.
	Complete bool `json:"complete"`
}

// storeStatus is one store's coverage.
type storeStatus struct {
	Store string `json:"store"`
	Total int    `json:"total"`
	// PerVersion counts the wrapped DEKs per key version ("1": n).
	PerVersion      map[string]int `json:"per_version"`
	Invalid         int            `json:"invalid"`
	OnLatest        int            `json:"on_latest"`
	PercentOnLatest float64        `json:"percent_on_latest"`
}

func newKeyStatus(service string, info keys.KeyInfo, cov []keys.StoreCoverage) keyStatus {
	ks := keyStatus{Service: service, Key: info.Name, Type: info.Type, Versions: info.Versions, LatestVersion: info.LatestVersion,
		MinDecryptionVersion: info.MinDecryptionVersion, MinEncryptionVersion: info.MinEncryptionVersion, Stores: []storeStatus{}, Complete: true}
	if ks.Versions == nil {
		ks.Versions = []int{}
	}
	for _, c := range cov {
		per := map[string]int{}
		for v, n := range c.PerVersion {
			per[strconv.Itoa(v)] = n
		}
		ks.Stores = append(ks.Stores, storeStatus{Store: c.Store, Total: c.Total, PerVersion: per, Invalid: c.Invalid, OnLatest: c.OnLatest(), PercentOnLatest: c.Percent()})
		ks.Complete = ks.Complete && c.Complete()
	}
	return ks
}

// status reports one key (--key or --service), or every service key of the registry.
func (o *options) status(ctx context.Context, out io.Writer, tr *keys.Transit) error {
	if o.key != "" {
		info, cov, closeFn, err := o.measure(ctx, tr)
		if err != nil {
			return err
		}
		defer closeFn()
		if o.json {
			return printStatusJSON(out, []keyStatus{newKeyStatus(o.service, info, cov)})
		}
		if err := printKey(out, info); err != nil || len(cov) == 0 {
			return err
		}
		return printCoverage(out, cov)
	}
	var all []keyStatus
	for _, sk := range Registry {
		info, cov, closeFn, err := o.measureKey(ctx, tr, sk.Key, sk.StoreFlags())
		if err != nil {
			return fmt.Errorf("service %s: %w", sk.Service, err)
		}
		closeFn()
		all = append(all, newKeyStatus(sk.Service, info, cov))
	}
	if o.json {
		return printStatusJSON(out, all)
	}
	return printStatusTable(out, all)
}

func printStatusJSON(out io.Writer, all []keyStatus) error {
	enc := json.NewEncoder(out)
	for _, ks := range all {
		if err := enc.Encode(ks); err != nil {
			return err
		}
	}
	return nil
}

// printStatusTable writes one row per key and store; a key's columns are on its first row.
func printStatusTable(out io.Writer, all []keyStatus) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "SERVICE\tKEY\tVERSIONS\tLATEST\tMIN DECRYPTION\tSTORE\tTOTAL\tPER VERSION\t% ON LATEST")
	for _, ks := range all {
		head := fmt.Sprintf("%s\t%s\t%s\tv%d\tv%d", ks.Service, ks.Key, joinInts(ks.Versions), ks.LatestVersion, ks.MinDecryptionVersion)
		blank := "\t\t\t\t"
		if len(ks.Stores) == 0 {
			_, _ = fmt.Fprintf(tw, "%s\t-\t-\t-\t-\n", head)
		}
		for i, st := range ks.Stores {
			prefix := head
			if i > 0 {
				prefix = blank
			}
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f%%\n", prefix, st.Store, st.Total, perVersion(st), st.PercentOnLatest)
		}
	}
	return tw.Flush()
}

func perVersion(st storeStatus) string {
	var versions []int
	for v := range st.PerVersion {
		n, _ := strconv.Atoi(v) // written by newKeyStatus from ints
		versions = append(versions, n)
	}
	slices.Sort(versions)
	var parts []string
	for _, v := range versions {
		parts = append(parts, fmt.Sprintf("v%d:%d", v, st.PerVersion[strconv.Itoa(v)]))
	}
	if st.Invalid > 0 {
		parts = append(parts, fmt.Sprintf("invalid:%d", st.Invalid))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
