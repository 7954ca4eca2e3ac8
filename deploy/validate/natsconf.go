package validate

import (
	"fmt"
	"slices"

	"github.com/nats-io/nats-server/v2/conf"
)

// NATSUser is one user of a NATS account with its publish and subscribe permissions.
type NATSUser struct {
	Name                          string
	PublishAllow, PublishDeny     []string
	SubscribeAllow, SubscribeDeny []string
	// AllowResponses lets the user publish one reply to each request it received, whatever
	// its publish allow-list says (permissions.allow_responses).
	AllowResponses bool
	HasPassword    bool
}

// NATSImport is a stream import from another account.
type NATSImport struct {
	Account, Subject string
}

// NATSAccount is an account of the NATS configuration.
type NATSAccount struct {
	Name          string
	JetStream     bool
	StreamExports []string
	Imports       []NATSImport
	Users         []NATSUser
}

// LoadNATSAccounts parses a NATS server configuration with the server's own parser
// (github.com/nats-io/nats-server/v2/conf; includes and $VARIABLES resolved, variables from the
// environment) and returns its accounts. Shapes the server would reject, or that this
// repository does not use, are errors.
func LoadNATSAccounts(path string) (map[string]*NATSAccount, error) {
	m, err := conf.ParseFile(path)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	accounts, ok := m["accounts"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: no accounts block", path)
	}
	out := map[string]*NATSAccount{}
	for name, v := range accounts {
		am, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("account %s: not a map", name)
		}
		a := &NATSAccount{Name: name}
		_, a.JetStream = am["jetstream"]
		for _, e := range list(am["exports"]) {
			em, _ := e.(map[string]any)
			s, ok := em["stream"].(string)
			if !ok {
				return nil, fmt.Errorf("account %s: an export that is not a stream export", name)
			}
			a.StreamExports = append(a.StreamExports, s)
		}
		for _, i := range list(am["imports"]) {
			im, _ := i.(map[string]any)
			sm, ok := im["stream"].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("account %s: an import that is not a stream import", name)
			}
			acc, _ := sm["account"].(string)
			subj, _ := sm["subject"].(string)
			a.Imports = append(a.Imports, NATSImport{Account: acc, Subject: subj})
		}
		for _, u := range list(am["users"]) {
			um, ok := u.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("account %s: a user that is not a map", name)
			}
			user := NATSUser{}
			user.Name, _ = um["user"].(string)
			pw, _ := um["password"].(string)
			user.HasPassword = pw != ""
			if perms, ok := um["permissions"].(map[string]any); ok {
				user.PublishAllow, user.PublishDeny = allowDeny(perms["publish"])
				user.SubscribeAllow, user.SubscribeDeny = allowDeny(perms["subscribe"])
				switch r := perms["allow_responses"].(type) {
				case bool:
					user.AllowResponses = r
				case nil:
				default:
					// A map sets max and expires; the plan wants the default (one reply).
					return nil, fmt.Errorf("account %s user %s: allow_responses must be true or false", name, user.Name)
				}
			}
			a.Users = append(a.Users, user)
		}
		out[name] = a
	}
	return out, nil
}

// allowDeny reads a permission block: a subject, a list of subjects (allow), or a map with
// allow and deny.
func allowDeny(v any) (allow, deny []string) {
	if m, ok := v.(map[string]any); ok {
		return stringList(m["allow"]), stringList(m["deny"])
	}
	return stringList(v), nil
}

func list(v any) []any {
	switch t := v.(type) {
	case []any:
		return t
	case nil:
		return nil
	}
	return []any{v}
}

func stringList(v any) []string {
	var out []string
	for _, e := range list(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
