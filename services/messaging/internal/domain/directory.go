package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
)

// DirectorySeed is what a deployment's directory starts from (SECUREMSG_DIRECTORY_BOOTSTRAP):
// the client applications allowed to call, the care pools with their members and settings, the
// people and the proxy grants that exist before anyone uses the admin rpcs. Importing it adds
// what is missing and never changes or removes what is stored, so it is safe on every start and
// an administrator's later changes win.
type DirectorySeed struct {
	Apps    []SeedApp    `json:"apps"`
	Pools   []SeedPool   `json:"pools"`
	Members []SeedMember `json:"members"`
	People  []SeedPerson `json:"people"`
	Grants  []SeedGrant  `json:"grants"`
}

// SeedApp is a client application: Kind is PATIENT_PORTAL, CARE_TEAM, THIRD_PARTY, OPERATOR or
// PROVISIONING.
type SeedApp struct {
	ClientID      string   `json:"client_id"`
	Kind          string   `json:"kind"`
	DisplayName   string   `json:"display_name"`
	AllowedScopes []string `json:"allowed_scopes"`
	PoolIDs       []string `json:"pool_ids"`
}

// SeedPool is a care pool, open to every patient unless PatientIDs lists who may write to it.
type SeedPool struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Organisation string   `json:"organisation"`
	PatientIDs   []string `json:"patient_ids"`
	// Settings, when given, are the pool's patient-facing settings for as long as it has none
	// stored: once the seed or UpdatePoolSettings has stored some, the stored ones win, so an
	// administrator's change survives every restart with the same seed.
	Settings *SeedPoolSettings `json:"settings,omitempty"`
}

// SeedPoolSettings are what UpdatePoolSettings sets, with the same limits. Turnaround is a Go
// duration ("48h"); empty or zero means none.
type SeedPoolSettings struct {
	AutoReplyEnabled    bool   `json:"auto_reply_enabled"`
	AutoReplyText       string `json:"auto_reply_text"`
	Turnaround          string `json:"turnaround"`
	EmergencyDisclaimer string `json:"emergency_disclaimer"`
}

// SeedSubject is whom pool settings the seed stored are updated by (UpdatedBySubject): the
// "service:" prefix is refused in people's tokens, so no person can be taken for it.
const SeedSubject = "service:messaging/directory-seed"

// SeedMember puts a person in a pool: Role is CLINICIAN, STAFF or LEAD.
type SeedMember struct {
	PoolID  string `json:"pool_id"`
	Subject string `json:"subject"`
	Role    string `json:"role"`
}

// SeedPerson is a person known before first contact, with the roles of the token's vocabulary.
type SeedPerson struct {
	Subject string   `json:"subject"`
	Roles   []string `json:"roles"`
}

// SeedGrant is a stored proxy grant lasting ValidFor from the import.
type SeedGrant struct {
	ID           string   `json:"id"`
	ProxySubject string   `json:"proxy_subject"`
	PatientID    string   `json:"patient_id"`
	Scopes       []string `json:"scopes"`
	ValidFor     string   `json:"valid_for"`
}

// ParseDirectorySeed reads a seed document and checks it whole, so a typo is found at start
// rather than as a refusal later.
func ParseDirectorySeed(b []byte) (DirectorySeed, error) {
	var s DirectorySeed
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return DirectorySeed{}, fmt.Errorf("directory seed: %s%w", poolOfDecodeError(b), err)
	}
	var errs []error
	pools := map[string]bool{}
	for _, p := range s.Pools {
		if p.ID == "" || p.Name == "" {
			errs = append(errs, errors.New("directory seed: a pool needs an id and a name"))
		}
		if p.Settings != nil {
			if _, err := p.Settings.Values(p.ID); err != nil {
				errs = append(errs, fmt.Errorf("directory seed: settings of pool %q: %w", p.ID, err))
			}
		}
		pools[p.ID] = true
	}
	for _, a := range s.Apps {
		if _, err := a.KindValue(); err != nil || a.ClientID == "" {
			errs = append(errs, fmt.Errorf("directory seed: app %q needs a client_id and a known kind", a.ClientID))
		}
	}
	for _, m := range s.Members {
		if _, err := m.RoleValue(); err != nil || !pools[m.PoolID] || m.Subject == "" {
			errs = append(errs, fmt.Errorf("directory seed: member %q of %q needs a seeded pool and a known role", m.Subject, m.PoolID))
		}
	}
	for _, p := range s.People {
		if _, err := p.RoleValues(); err != nil || p.Subject == "" {
			errs = append(errs, fmt.Errorf("directory seed: person %q needs known roles", p.Subject))
		}
	}
	for _, g := range s.Grants {
		if _, err := g.Duration(); err != nil || uuid.Validate(g.ID) != nil || g.ProxySubject == "" || g.PatientID == "" || len(g.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("directory seed: grant %q needs a UUID id, a proxy, a patient, scopes and a valid_for duration", g.ID))
		}
	}
	return s, errors.Join(errs...)
}

// poolOfDecodeError names the first pool that does not decode on its own ("pool %q: "), or is
// "" when the fault is elsewhere: encoding/json names the field of an unknown or mistyped
// value but not which of the pools holds it.
func poolOfDecodeError(b []byte) string {
	var loose struct{ Pools []json.RawMessage }
	if json.Unmarshal(b, &loose) != nil {
		return ""
	}
	for _, raw := range loose.Pools {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if dec.Decode(&SeedPool{}) != nil {
			var id struct{ ID string }
			_ = json.Unmarshal(raw, &id)
			return fmt.Sprintf("pool %q: ", id.ID)
		}
	}
	return ""
}

// Values are the settings to store for poolID, without their update time, author and version.
func (s SeedPoolSettings) Values(poolID string) (PoolSettings, error) {
	st := PoolSettings{PoolID: poolID, AutoReplyEnabled: s.AutoReplyEnabled, AutoReplyText: s.AutoReplyText,
		EmergencyDisclaimer: s.EmergencyDisclaimer}
	if s.Turnaround != "" {
		d, err := time.ParseDuration(s.Turnaround)
		switch {
		case err != nil:
			return PoolSettings{}, fmt.Errorf("turnaround %q is not a duration such as \"48h\"", s.Turnaround)
		case d < 0:
			return PoolSettings{}, fmt.Errorf("turnaround %q is negative", s.Turnaround)
		case d%time.Second != 0:
			// pool_settings keeps whole seconds: refuse rather than store less than was written.
			return PoolSettings{}, fmt.Errorf("turnaround %q is not a whole number of seconds", s.Turnaround)
		}
		st.Turnaround = d
	}
	return st, CheckPoolSettings(st)
}

// KindValue is the app's kind as the directory's enum.
func (a SeedApp) KindValue() (directoryv1.ClientAppKind, error) {
	v, ok := directoryv1.ClientAppKind_value["CLIENT_APP_KIND_"+strings.ToUpper(a.Kind)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown client app kind %q", a.Kind)
	}
	return directoryv1.ClientAppKind(v), nil
}

// RoleValue is the member's pool role as the directory's enum.
func (m SeedMember) RoleValue() (directoryv1.PoolRole, error) {
	v, ok := directoryv1.PoolRole_value["POOL_ROLE_"+strings.ToUpper(m.Role)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown pool role %q", m.Role)
	}
	return directoryv1.PoolRole(v), nil
}

// RoleValues are the person's roles as the suite's enum.
func (p SeedPerson) RoleValues() ([]commonv1.Role, error) {
	var out []commonv1.Role
	for _, r := range p.Roles {
		v, ok := commonv1.Role_value["ROLE_"+strings.ToUpper(r)]
		if !ok || v == 0 {
			return nil, fmt.Errorf("unknown role %q", r)
		}
		if !slices.Contains(out, commonv1.Role(v)) {
			out = append(out, commonv1.Role(v))
		}
	}
	return out, nil
}

// Duration is how long the grant lasts from its import.
func (g SeedGrant) Duration() (time.Duration, error) {
	d, err := time.ParseDuration(g.ValidFor)
	if err == nil && d <= 0 {
		err = errors.New("not positive")
	}
	return d, err
}
