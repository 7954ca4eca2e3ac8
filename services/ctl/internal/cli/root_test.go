package cli_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/securemsg/securemsg/services/ctl/internal/cli"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
)

// TestRootHelpListsTheCommands: the root's one-line summary names every command there is, and
// nothing that is not one.
func TestRootHelpListsTheCommands(t *testing.T) {
	t.Parallel()
	root := cli.NewRootCommand(config.Env{})
	topics := map[string]string{"keys": "keys", "audit": "audit", "care pools": "pools", "client apps": "apps", "people": "people",
		"retention purges": "retention", "legal holds": "legal-hold", "tokens": "token"}
	list, ok := strings.CutPrefix(root.Short, "Operate securemsg: ")
	if !ok {
		t.Fatalf("root Short = %q, want it to start with the list of what securemsgctl operates", root.Short)
	}
	var named []string
	for _, topic := range strings.Split(list, ", ") {
		cmd, ok := topics[topic]
		if !ok {
			t.Errorf("root Short names %q, which is no command", topic)
			continue
		}
		named = append(named, cmd)
	}
	for _, c := range root.Commands() {
		if c.Name() != "help" && c.Name() != "completion" && !slices.Contains(named, c.Name()) {
			t.Errorf("root Short = %q, does not name the %s command", root.Short, c.Name())
		}
	}
	if !strings.Contains(root.Long, exitcode.Help) {
		t.Errorf("root Long = %q, want the exit statuses", root.Long)
	}
}

// TestUsageErrorsExitTwo: command lines cobra or a command refuses before calling any service
// (bad flags, arguments and flag values) end with exit status 2.
func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"no-such-command"},
		{"retention", "no-such-command"},
		{"retention", "purge", "--no-such-flag"},
		{"retention", "purge", "extra-argument"},
		{"retention", "purge", "--limit", "-1"},
		{"retention", "purge", "--limit", "many"},
		{"retention", "purge", "--category", "gossip"},
		{"legal-hold", "set", "7f8d2a4e-0000-4000-8000-000000000000"},
		{"legal-hold", "clear"},
		{"legal-hold", "clear", "a", "b"},
		{"legal-hold", "list", "extra-argument"},
		{"legal-hold", "list", "--page-size", "0"},
		{"retention", "show", "extra-argument"},
		{"keys", "rotate"},
		{"keys", "rewrap", "--key", "securemsg-notification"},
		{"keys", "coverage", "--service", "nobody"},
		{"keys", "status", "--store", "pg:notification.person_keys.subject.wrapped_dek"},
		{"pools", "get"},
		{"pools", "create", "pool-x", "--name", "X", "--audience", "everyone"},
		{"pools", "create", "pool-x", "--name", "X", "--hours", "Mon 08:00-17:00"},
		{"pools", "add-member", "pool-x", "user-x", "--role", "boss"},
		{"pools", "update", "pool-x"},
		{"apps", "register", "app-x", "--kind", "portal", "--name", "X", "--scope", "messages.read"},
		{"apps", "update", "app-x"},
		{"people", "list", "--source", "rumour"},
		{"people", "provision", "user-x", "--role", "patient"},
		{"audit", "export"},
		{"audit", "export", "--out", "export.jsonl", "--format", "csv"},
		{"token", "patient", "--issuer", "ftp://127.0.0.1"},
		{"token", "patient", "--issuer", "http://203.0.113.9:8400"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			root := cli.NewRootCommand(config.Env{})
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(args)
			err := root.ExecuteContext(t.Context())
			if got := exitcode.Of(err); got != exitcode.BadUsage {
				t.Errorf("securemsgctl %s = exit %d (%v), want %d", strings.Join(args, " "), got, err, exitcode.BadUsage)
			}
		})
	}
}
