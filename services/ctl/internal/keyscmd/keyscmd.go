// Package keyscmd implements `securemsgctl keys`: rotate a Transit key, rewrap every stored
// wrapped DEK onto the latest version (batched, resumable, with a progress bar and a dry run),
// report coverage, show a key's versions and retire old versions once coverage is 100%. It
// knows every service's key and the tables holding its wrapped DEKs (Registry): --service
// stands for --key and --store, and `keys status` alone reports every service key.
package keyscmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

// options are the flags shared by the keys subcommands.
type options struct {
	env        config.Env
	vault      keys.Config
	key        string
	service    string
	stores     []string
	json       bool
	pgURL      string
	batch      int
	dryRun     bool
	resumeFile string
	minVersion int
	errOut     io.Writer // progress bar
}

// NewCommand returns the `keys` command with its subcommands.
func NewCommand(env config.Env) *cobra.Command {
	o := &options{env: env}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Rotate Transit keys, rewrap stored DEKs, report coverage, retire old versions",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.vault.Addr, "vault-addr", env.VaultAddr, "Vault address ($SECUREMSG_VAULT_ADDR)")
	pf.StringVar(&o.vault.Token, "vault-token", "", "Vault token (default $SECUREMSG_VAULT_TOKEN)")
	pf.StringVar(&o.vault.CACert, "vault-cacert", env.VaultCACert, "PEM CA file for Vault's TLS certificate ($SECUREMSG_VAULT_CACERT)")
	pf.StringVar(&o.vault.ServerName, "vault-server-name", env.VaultServerName, "TLS server name of Vault ($SECUREMSG_VAULT_SERVER_NAME)")
	pf.StringVar(&o.vault.KubernetesRole, "vault-k8s-role", env.VaultK8sRole, "Vault role for Kubernetes auth instead of a token ($SECUREMSG_VAULT_K8S_ROLE)")
	pf.StringVar(&o.vault.KubernetesMount, "vault-k8s-mount", env.VaultK8sMount, "Kubernetes auth mount ($SECUREMSG_VAULT_K8S_MOUNT)")
	pf.StringVar(&o.vault.TransitMount, "transit-mount", env.TransitMount, "Transit mount ($SECUREMSG_VAULT_TRANSIT_MOUNT)")
	pf.StringVar(&o.key, "key", "", "Transit key name (default: the --service's key)")
	pf.StringVar(&o.service, "service", "", "the service whose key and stores to use ("+ServiceNames()+"); --key and --store override them")

	storeFlags := func(c *cobra.Command) {
		c.Flags().StringArrayVar(&o.stores, "store", nil,
			"a table holding wrapped DEKs: pg:<schema>.<table>.<id column>.<wrapped column> (repeat for each; default: the --service's)")
		c.Flags().StringVar(&o.pgURL, "pg-url", "", "Postgres URL for pg: stores (default $SECUREMSG_PG_URL)")
		c.Flags().IntVar(&o.batch, "batch", 500, "wrapped DEKs per scan and per Vault rewrap request")
	}
	jsonFlag := func(c *cobra.Command) {
		c.Flags().BoolVar(&o.json, "json", false, "print one JSON object per key instead of a table")
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show keys' versions, latest, min_decryption_version and rewrap coverage (every service's key without --key/--service)",
		Long: `status reads each key's versions from Vault and, where its stores are known, counts the wrapped
DEKs per key version in each store. Without --key or --service it reports every service key
(` + ServiceNames() + `); with --key alone it shows that key only, with the coverage of any --store.

Output: one row per key and store (a key without stores has one row), or with --json one JSON
object per key. Exit status: 0 ok, 1 failed (Vault or Postgres unreachable), 2 usage,
3 refused by Vault, 4 no such key.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.key == "" && o.service == "" && len(o.stores) > 0 {
				return exitcode.Usage(errors.New("--store needs --key or --service"))
			}
			if o.key != "" || o.service != "" {
				if err := o.resolve(false); err != nil {
					return err
				}
			}
			return o.run(c, o.status)
		},
	}
	storeFlags(status)
	jsonFlag(status)
	rotate := &cobra.Command{
		Use: "rotate", Short: "Add a new key version; new DEKs are wrapped under it",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.resolveAndRun(c, false, o.rotate) },
	}
	coverage := &cobra.Command{
		Use: "coverage", Short: "Count wrapped DEKs per key version in each store",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.resolveAndRun(c, true, o.coverage) },
	}
	storeFlags(coverage)
	jsonFlag(coverage)
	rewrap := &cobra.Command{
		Use:   "rewrap",
		Short: "Rewrap every wrapped DEK in the stores onto the latest key version (Vault rewrap: no plaintext leaves Vault)",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return o.resolveAndRun(c, true, o.rewrap) },
	}
	storeFlags(rewrap)
	rewrap.Flags().BoolVar(&o.dryRun, "dry-run", false, "count what would be rewrapped; change nothing")
	rewrap.Flags().StringVar(&o.resumeFile, "resume", "", "checkpoint file: progress is saved there and a rerun resumes from it")
	retire := &cobra.Command{
		Use:   "retire",
		Short: "Raise min_decryption_version; refused unless every store is 100% on the latest version",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return o.resolveAndRun(c, true, o.retire) },
	}
	storeFlags(retire)
	retire.Flags().IntVar(&o.minVersion, "min-version", 0, "new min_decryption_version (required)")
	_ = retire.MarkFlagRequired("min-version")

	cmd.AddCommand(status, rotate, coverage, rewrap, retire)
	return cmd
}

// resolve fills --key and --store from --service where they were not given, and refuses a
// command line that names no key, or no store when the command needs one.
func (o *options) resolve(needStores bool) error {
	if o.service != "" {
		sk, ok := Lookup(o.service)
		if !ok {
			return exitcode.Usage(fmt.Errorf("--service %q: want one of %s", o.service, ServiceNames()))
		}
		if o.key == "" {
			o.key = sk.Key
		}
		if len(o.stores) == 0 {
			o.stores = sk.StoreFlags()
		}
	}
	if o.key == "" {
		return exitcode.Usage(errors.New("--key or --service is required"))
	}
	if needStores && len(o.stores) == 0 {
		return exitcode.Usage(errors.New("--store or --service is required"))
	}
	return nil
}

func (o *options) resolveAndRun(c *cobra.Command, needStores bool, fn func(context.Context, io.Writer, *keys.Transit) error) error {
	if err := o.resolve(needStores); err != nil {
		return err
	}
	return o.run(c, fn)
}

// run builds the Transit client and calls fn.
func (o *options) run(c *cobra.Command, fn func(context.Context, io.Writer, *keys.Transit) error) error {
	if o.vault.Token == "" && o.vault.KubernetesRole == "" {
		o.vault.Token = o.env.VaultToken
	}
	o.errOut = c.ErrOrStderr()
	tr, err := keys.NewTransit(c.Context(), o.vault)
	if err != nil {
		return err
	}
	return fn(c.Context(), c.OutOrStdout(), tr)
}

// printKey writes one key's versions as a block.
func printKey(out io.Writer, info keys.KeyInfo) error {
	_, err := fmt.Fprintf(out, "key %s (%s)\n"+
		"  versions:               %s\n"+
		"  latest_version:         %d\n"+
		"  min_decryption_version: %d\n"+
		"  min_encryption_version: %d\n",
		info.Name, info.Type, joinInts(info.Versions), info.LatestVersion, info.MinDecryptionVersion, info.MinEncryptionVersion)
	return err
}

func (o *options) rotate(ctx context.Context, out io.Writer, tr *keys.Transit) error {
	if err := tr.Rotate(ctx, o.key); err != nil {
		return err
	}
	info, err := tr.ReadKey(ctx, o.key)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "rotated %s: latest version is now %d; run `securemsgctl keys rewrap` next\n", o.key, info.LatestVersion)
	return err
}

// openStores connects to Postgres and opens every --store.
func (o *options) openStores(ctx context.Context) ([]keys.WrappedKeyStore, func(), error) {
	return o.openStoresOf(ctx, o.stores)
}

// openStoresOf connects to Postgres and opens every store of flags (pg: specs).
func (o *options) openStoresOf(ctx context.Context, flags []string) ([]keys.WrappedKeyStore, func(), error) {
	var specs []keys.PGStoreSpec
	var errs []error
	for _, s := range flags {
		spec, err := keys.ParsePGStoreSpec(s)
		if err != nil {
			errs = append(errs, err)
		}
		specs = append(specs, spec)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, exitcode.Usage(err)
	}
	url := o.pgURL
	if url == "" {
		url = o.env.PostgresURL
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, errors.New("postgres: invalid --pg-url / SECUREMSG_PG_URL") // the URL may hold a password
	}
	var stores []keys.WrappedKeyStore
	for _, spec := range specs {
		s, err := keys.NewPGStore(ctx, pool, spec)
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		stores = append(stores, s)
	}
	return stores, pool.Close, nil
}

func (o *options) measure(ctx context.Context, tr *keys.Transit) (keys.KeyInfo, []keys.StoreCoverage, func(), error) {
	return o.measureKey(ctx, tr, o.key, o.stores)
}

// measureKey reads key from Vault and the coverage of its stores (none: no coverage, and no
// Postgres connection).
func (o *options) measureKey(ctx context.Context, tr *keys.Transit, key string, storeFlags []string) (keys.KeyInfo, []keys.StoreCoverage, func(), error) {
	info, err := tr.ReadKey(ctx, key)
	if err != nil {
		return info, nil, nil, fmt.Errorf("key %s: %w", key, err)
	}
	if len(storeFlags) == 0 {
		return info, nil, func() {}, nil
	}
	stores, closeFn, err := o.openStoresOf(ctx, storeFlags)
	if err != nil {
		return info, nil, nil, err
	}
	cov, err := keys.Coverage(ctx, info.LatestVersion, o.batch, stores...)
	if err != nil {
		closeFn()
		return info, nil, nil, err
	}
	return info, cov, closeFn, nil
}

func (o *options) coverage(ctx context.Context, out io.Writer, tr *keys.Transit) error {
	info, cov, closeFn, err := o.measure(ctx, tr)
	if err != nil {
		return err
	}
	defer closeFn()
	if o.json {
		return printStatusJSON(out, []keyStatus{newKeyStatus(o.service, info, cov)})
	}
	return printCoverage(out, cov)
}

// printCoverage writes one aligned row per store to out and returns the first write error.
func printCoverage(out io.Writer, cov []keys.StoreCoverage) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "STORE\tTOTAL\tPER VERSION\tON LATEST\t% ON LATEST"); err != nil {
		return err
	}
	for _, c := range cov {
		var per []string
		for _, v := range c.Versions() {
			per = append(per, fmt.Sprintf("v%d:%d", v, c.PerVersion[v]))
		}
		if c.Invalid > 0 {
			per = append(per, fmt.Sprintf("invalid:%d", c.Invalid))
		}
		if _, err := fmt.Fprintf(tw, "%s\t%d\t%s\t%d (v%d)\t%.2f%%\n", c.Store, c.Total, strings.Join(per, " "), c.OnLatest(), c.LatestVersion, c.Percent()); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func (o *options) rewrap(ctx context.Context, out io.Writer, tr *keys.Transit) error {
	_, cov, closeFn, err := o.measure(ctx, tr)
	if err != nil {
		return err
	}
	defer closeFn()
	stores, closeStores, err := o.openStores(ctx)
	if err != nil {
		return err
	}
	defer closeStores()
	total := 0
	for _, c := range cov {
		total += c.Total
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(o.errOut),
		progressbar.OptionSetDescription("scanning wrapped DEKs"),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(0),
		progressbar.OptionClearOnFinish())
	rw := &keys.Rewrapper{
		Transit: tr, KeyName: o.key, BatchSize: o.batch, DryRun: o.dryRun, CheckpointFile: o.resumeFile,
		Progress: func(p keys.Progress) {
			bar.Describe(p.Store)
			_ = bar.Add(p.Scanned)
		},
	}
	reports, err := rw.Run(ctx, stores...)
	_ = bar.Finish()
	verb := "rewrapped"
	if o.dryRun {
		verb = "would rewrap"
	}
	// The reports are printed even when the run failed: they say how far each store got. A
	// failed run's error (with its resume hint) outranks a failed write of the reports.
	printErr := o.printReports(out, reports, verb)
	if err != nil {
		if o.resumeFile != "" {
			return fmt.Errorf("%w (progress saved; rerun with --resume %s)", err, o.resumeFile)
		}
		return err
	}
	if printErr != nil {
		return printErr
	}
	info, after, closeAfter, err := o.measure(ctx, tr)
	if err != nil {
		return err
	}
	defer closeAfter()
	if _, err := fmt.Fprintf(out, "coverage after rewrap (latest v%d):\n", info.LatestVersion); err != nil {
		return err
	}
	return printCoverage(out, after)
}

// printReports writes one line per store of a rewrap run and returns the first write error.
func (o *options) printReports(out io.Writer, reports []keys.RewrapReport, verb string) error {
	for _, r := range reports {
		var err error
		if r.Skipped {
			_, err = fmt.Fprintf(out, "%s: already finished in %s, skipped\n", r.Store, o.resumeFile)
		} else {
			_, err = fmt.Fprintf(out, "%s: scanned %d, %s %d, already latest %d, conflicts %d, retired %d, invalid %d\n",
				r.Store, r.Scanned, verb, r.Rewrapped, r.AlreadyLatest, r.Conflicts, r.Retired, r.Invalid)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *options) retire(ctx context.Context, out io.Writer, tr *keys.Transit) error {
	info, cov, closeFn, err := o.measure(ctx, tr)
	if err != nil {
		return err
	}
	defer closeFn()
	if o.minVersion < 1 || o.minVersion > info.LatestVersion {
		return fmt.Errorf("--min-version %d: must be between 1 and the latest version %d", o.minVersion, info.LatestVersion)
	}
	if o.minVersion < info.MinDecryptionVersion {
		return fmt.Errorf("--min-version %d is below the current min_decryption_version %d", o.minVersion, info.MinDecryptionVersion)
	}
	var behind []string
	for _, c := range cov {
		if !c.Complete() {
			behind = append(behind, fmt.Sprintf("%s %.2f%%", c.Store, c.Percent()))
		}
	}
	if len(behind) > 0 {
		// The refusal is the answer; the table only explains it, so a failed write of the table
		// must not replace the refusal.
		_ = printCoverage(out, cov)
		return fmt.Errorf("refusing to retire versions below %d: coverage is not 100%% (%s); run `securemsgctl keys rewrap` first",
			o.minVersion, strings.Join(behind, ", "))
	}
	if err := tr.SetMinDecryptionVersion(ctx, o.key, o.minVersion); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "min_decryption_version of %s is now %d\n", o.key, o.minVersion)
	return err
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range slices.Clone(v) {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
