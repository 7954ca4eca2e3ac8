// Package policy decides who may do what. The rules are Cedar policies (deploy/policies/*.cedar)
// validated against a Cedar schema and evaluated with cedar-go: deny by default, forbid wins.
// The same actions are checked at two levels: the Guard asks at the rpc level "may this principal
// call this rpc at all" (resource Api::"<service>"), and use cases call Authorize with the
// record's facts. Tunable numbers (MFA methods, freshness window) live in settings.json beside the
// policies, not in code. Every denial and every allowed PHI read is recorded through an
// auth.DecisionRecorder; an allowed PHI read that cannot be recorded is refused.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

// Files the loader reads from the policy folder.
const (
	SchemaFile   = "securemsg.cedarschema"
	SettingsFile = "settings.json"
	PolicyExt    = ".cedar"
)

// Action groups declared in the schema that the code reads.
const (
	GroupPHIRead   = "phi-read"
	GroupSensitive = "sensitive"
)

// BreakGlassAnnotation marks a permit policy that grants access outside the normal rules; a
// decision allowed only by such policies is a break-glass access.
const BreakGlassAnnotation = "breakGlass"

// Settings are the tunable numbers of the policies (settings.json).
type Settings struct {
	// MFAMethods are the `amr` values (RFC 8176) that count as multi-factor authentication.
	MFAMethods []string `json:"mfa_methods"`
	// FreshAuthSeconds is how recent auth_time must be for sensitive actions and break-glass.
	FreshAuthSeconds int64 `json:"fresh_auth_seconds"`
}

// Options configure an Engine.
type Options struct {
	// Recorder receives every denial and every allowed PHI read. Required: an engine that cannot
	// audit must not authorise.
	Recorder auth.DecisionRecorder
	// Logger for reloads and evaluation errors (never PHI). Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Engine holds the loaded policies and answers authorisation questions. It is safe for concurrent
// use; Reload swaps the policies atomically.
type Engine struct {
	dir      string
	recorder auth.DecisionRecorder
	logger   *slog.Logger
	now      func() time.Time
	reloadMu sync.Mutex
	cur      atomic.Pointer[snapshot]
}

// snapshot is one loaded, validated set of policies; never mutated after load.
type snapshot struct {
	policies *cedar.PolicySet
	// byAction holds, per action, the policies whose action scope can match it. Cedar checks a
	// policy's scope before its conditions, so a policy whose action scope does not match is
	// never satisfied and never errors: deciding against the slice gives the same decision,
	// reasons and errors as the whole set, without evaluating every policy on every request.
	byAction      map[types.EntityUID]*cedar.PolicySet
	actions       map[types.EntityUID]types.Entity // action entities with their groups
	rpcActions    []string                         // declared actions that are not groups
	phiRead       map[string]bool
	breakGlass    map[types.PolicyID]bool
	resourceTypes map[string]bool
	settings      Settings
	mfaMethods    types.Set
	digest        string
}

// New loads and validates the policy folder. It fails on any parse or validation error, a policy
// without a unique @id, or bad settings, so a service never starts with a half-read policy set.
func New(dir string, opts Options) (*Engine, error) {
	if opts.Recorder == nil {
		return nil, errors.New("policy: a DecisionRecorder is required")
	}
	e := &Engine{dir: dir, recorder: opts.Recorder, logger: opts.Logger, now: opts.Now}
	if e.logger == nil {
		e.logger = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	s, err := load(dir)
	if err != nil {
		return nil, err
	}
	e.cur.Store(s)
	return e, nil
}

// Reload re-reads the policy folder. On error the current policies stay in force and the error
// is returned; on success new decisions use the new policies.
func (e *Engine) Reload() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	s, err := load(e.dir)
	if err != nil {
		return err
	}
	old := e.cur.Swap(s)
	if old.digest != s.digest {
		e.logger.Info("policies reloaded", slog.String("digest", s.digest), slog.Int("policies", len(maps.Collect(s.policies.All()))))
	}
	return nil
}

// Digest identifies the loaded policy files (sha-256 over names and contents), for logs, metrics
// and the audit trail ("which policies decided this").
func (e *Engine) Digest() string { return e.cur.Load().digest }

// Settings returns the loaded settings.
func (e *Engine) Settings() Settings { return e.cur.Load().settings }

// Actions lists the declared actions that are not groups (rpcs and field-level actions), sorted.
func (e *Engine) Actions() []string { return slices.Clone(e.cur.Load().rpcActions) }

// IsPHIRead reports whether action is in the phi-read group.
func (e *Engine) IsPHIRead(action string) bool { return e.cur.Load().phiRead[action] }

// PolicySet returns the loaded policies (read-only), for coverage tests and tooling.
func (e *Engine) PolicySet() *cedar.PolicySet { return e.cur.Load().policies }

func readDir(dir string) (schemaSrc, settingsSrc []byte, policyFiles map[string][]byte, digest string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("policy: read %s: %w", dir, err)
	}
	h := sha256.New()
	policyFiles = map[string][]byte{}
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || strings.HasPrefix(name, ".") {
			continue // Kubernetes ConfigMaps add ..data folders and symlinks; skip hidden names
		}
		isPolicy := strings.HasSuffix(name, PolicyExt)
		if !isPolicy && name != SchemaFile && name != SettingsFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name)) //nolint:gosec // G304: the operator's policy folder, names listed from it
		if err != nil {
			return nil, nil, nil, "", fmt.Errorf("policy: read %s: %w", name, err)
		}
		_, _ = fmt.Fprintf(h, "%s\x00%d\x00", name, len(b)) // a hash.Hash never fails to write
		h.Write(b)
		switch name {
		case SchemaFile:
			schemaSrc = b
		case SettingsFile:
			settingsSrc = b
		default:
			policyFiles[name] = b
		}
	}
	var errs []error
	if schemaSrc == nil {
		errs = append(errs, fmt.Errorf("policy: %s missing in %s", SchemaFile, dir))
	}
	if settingsSrc == nil {
		errs = append(errs, fmt.Errorf("policy: %s missing in %s", SettingsFile, dir))
	}
	if len(policyFiles) == 0 {
		errs = append(errs, fmt.Errorf("policy: no *%s files in %s", PolicyExt, dir))
	}
	return schemaSrc, settingsSrc, policyFiles, hex.EncodeToString(h.Sum(nil))[:16], errors.Join(errs...)
}

func load(dir string) (*snapshot, error) {
	schemaSrc, settingsSrc, files, digest, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	var sch schema.Schema
	sch.SetFilename(SchemaFile)
	if err := sch.UnmarshalCedar(schemaSrc); err != nil {
		return nil, fmt.Errorf("policy: parse schema: %w", err)
	}
	resolved, err := sch.Resolve()
	if err != nil {
		return nil, fmt.Errorf("policy: resolve schema: %w", err)
	}
	validator := validate.New(resolved, validate.WithStrict())

	s := &snapshot{
		policies:      cedar.NewPolicySet(),
		actions:       map[types.EntityUID]types.Entity{},
		phiRead:       map[string]bool{},
		breakGlass:    map[types.PolicyID]bool{},
		resourceTypes: map[string]bool{},
		digest:        digest,
	}
	if err := json.Unmarshal(settingsSrc, &s.settings); err != nil {
		return nil, fmt.Errorf("policy: parse %s: %w", SettingsFile, err)
	}
	var errs []error
	if len(s.settings.MFAMethods) == 0 {
		errs = append(errs, fmt.Errorf("policy: %s: mfa_methods is empty", SettingsFile))
	}
	if s.settings.FreshAuthSeconds <= 0 {
		errs = append(errs, fmt.Errorf("policy: %s: fresh_auth_seconds must be positive", SettingsFile))
	}
	mfa := make([]types.Value, len(s.settings.MFAMethods))
	for i, m := range s.settings.MFAMethods {
		mfa[i] = types.String(m)
	}
	s.mfaMethods = types.NewSet(mfa...)

	phiGroup := types.NewEntityUID("Action", GroupPHIRead)
	for uid, a := range resolved.Actions {
		s.actions[uid] = a.Entity
		if a.AppliesTo == nil {
			continue // an action group
		}
		name := string(uid.ID)
		s.rpcActions = append(s.rpcActions, name)
		if a.Entity.Parents.Contains(phiGroup) {
			s.phiRead[name] = true
		}
	}
	sort.Strings(s.rpcActions)
	for et := range resolved.Entities {
		s.resourceTypes[string(et)] = true
	}
	delete(s.resourceTypes, "User")
	delete(s.resourceTypes, "Service")
	delete(s.resourceTypes, "Role")

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		list, err := cedar.NewPolicyListFromBytes(name, files[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: parse %s: %w", name, err))
			continue
		}
		for _, p := range list {
			id, ok := p.Annotations()["id"]
			if !ok || id == "" {
				errs = append(errs, fmt.Errorf("policy: %s:%d: policy has no @id", name, p.Position().Line))
				continue
			}
			if err := validator.Policy(string(id), (*xast.Policy)(p.AST())); err != nil {
				errs = append(errs, fmt.Errorf("policy: %s: %s does not validate against the schema: %w", name, id, err))
				continue
			}
			if !s.policies.Add(types.PolicyID(id), p) {
				errs = append(errs, fmt.Errorf("policy: %s: duplicate @id %q", name, id))
				continue
			}
			if p.Annotations()[BreakGlassAnnotation] == "true" {
				s.breakGlass[types.PolicyID(id)] = true
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.byAction = sliceByAction(s.policies, s.actions)
	return s, nil
}

// sliceByAction builds snapshot.byAction.
func sliceByAction(all *cedar.PolicySet, actions map[types.EntityUID]types.Entity) map[types.EntityUID]*cedar.PolicySet {
	out := make(map[types.EntityUID]*cedar.PolicySet, len(actions))
	for action := range actions {
		set := cedar.NewPolicySet()
		for id, p := range all.All() {
			if actionScopeMatches((*xast.Policy)(p.AST()).Action, action, actions) {
				set.Add(id, p)
			}
		}
		out[action] = set
	}
	return out
}

// actionScopeMatches reports whether a policy's action scope can hold for action. Scope kinds it
// does not know are kept (the slice may hold too much, never too little).
func actionScopeMatches(scope xast.IsActionScopeNode, action types.EntityUID, actions map[types.EntityUID]types.Entity) bool {
	switch sc := scope.(type) {
	case xast.ScopeTypeAll:
		return true
	case xast.ScopeTypeEq:
		return sc.Entity == action
	case xast.ScopeTypeIn:
		return actionIn(action, sc.Entity, actions)
	case xast.ScopeTypeInSet:
		for _, group := range sc.Entities {
			if actionIn(action, group, actions) {
				return true
			}
		}
		return false
	}
	return true
}

// actionIn is Cedar's `action in group`: the action itself or one of its transitive groups.
func actionIn(action, group types.EntityUID, actions map[types.EntityUID]types.Entity) bool {
	seen := map[types.EntityUID]bool{}
	queue := []types.EntityUID{action}
	for len(queue) > 0 {
		uid := queue[0]
		queue = queue[1:]
		if uid == group {
			return true
		}
		if seen[uid] {
			continue
		}
		seen[uid] = true
		for parent := range actions[uid].Parents.All() {
			queue = append(queue, parent)
		}
	}
	return false
}
