package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/securemsg/securemsg/services/ctl/internal/cli"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
)

// operationsDoc is the operator guide whose securemsgctl command lines must run: an on-call
// engineer copies them from the runbooks at 3 a.m., and a renamed command or flag must fail here
// rather than there.
var operationsDoc = filepath.Join("..", "..", "..", "..", "docs", "operations.md")

// TestOperationsDocCommandsExist: every securemsgctl command line of docs/operations.md, in a
// fenced block or an inline code span, names a command of the real tree and only flags that
// command defines (its own, inherited ones, and -h/--help). Positional arguments are not
// checked: they are placeholders (THREAD_ID, <thread-id>, …) or values.
func TestOperationsDocCommandsExist(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatalf("read %s: %v", operationsDoc, err)
	}
	root := commandTree()
	lines := docCommandLines(string(md))
	// The guide has dozens of command lines; finding few means the extraction broke, and a test
	// that checks nothing would pass whatever the guide says.
	if len(lines) < 20 {
		t.Fatalf("found %d securemsgctl command lines in %s, want at least 20: is the extraction broken?", len(lines), operationsDoc)
	}
	for _, l := range lines {
		if err := checkCommandLine(root, l.args); err != nil {
			t.Errorf("%s:%d: securemsgctl %s: %v", operationsDoc, l.line, strings.Join(l.args, " "), err)
		}
	}
	t.Logf("checked %d securemsgctl command lines", len(lines))
}

// TestCommandLineChecker: the checker refuses what cobra would refuse (an unknown command, an
// unknown flag, a sibling's flag, a subcommand's flag before the subcommand) and accepts real
// command lines with placeholders, so the test above can fail.
func TestCommandLineChecker(t *testing.T) {
	t.Parallel()
	root := commandTree()
	good := []string{
		"keys rotate --key securemsg-messaging",
		"keys --key securemsg-messaging rotate",
		"keys rewrap --key=securemsg-messaging --store pg:messaging.threads.id.wrapped_dek --dry-run",
		"audit verify --export audit.jsonl --checkpoint cp.json --public-key audit-signing.pub",
		"legal-hold set <thread-id> --case LIT-2026-0042",
		"legal-hold clear THREAD_ID",
		"retention purge -y --category billing",
		"pools …",
		"--help",
		"token patient -v --ttl 5m",
	}
	for _, l := range good {
		if err := checkCommandLine(root, strings.Fields(l)); err != nil {
			t.Errorf("securemsgctl %s: %v, want accepted", l, err)
		}
	}
	bad := []string{
		"keys rotatee --key securemsg-messaging",   // no such command
		"keys rotate --key x --force",              // no such flag
		"keys rotate --key x --dry-run",            // rewrap's flag, not rotate's
		"retention --dry-run purge",                // purge's flag before purge
		"audit verify --export a.jsonl --pubkey k", // misspelt flag
		"retention purge -q",                       // no such shorthand
		"no-such-command",
		"legal-hold list-all",
	}
	for _, l := range bad {
		if err := checkCommandLine(root, strings.Fields(l)); err == nil {
			t.Errorf("securemsgctl %s: accepted, want refused", l)
		}
	}
	// The extraction finds commands in fenced blocks (continued lines, comments, pipes, env
	// prefixes, go run) and inline spans (also across a line break), and nothing in image names
	// or build arguments.
	md := "Run `securemsgctl keys status --key k` or\n`securemsgctl apps register ID --kind\n  provisioning`.\n\n" +
		"```sh\n" +
		"securemsgctl keys rewrap --key k \\\n  --store pg:a.b.c.d --dry-run   # first\n" +
		"SECUREMSG_VAULT_TOKEN=x go run ./services/ctl/cmd/securemsgctl keys coverage --key k | tee out\n" +
		"docker build --build-arg SERVICE=securemsgctl --build-arg MAIN=./services/ctl/cmd/securemsgctl -t r/securemsg/securemsgctl:v .\n" +
		"```\n"
	want := []string{ // fenced blocks first, then inline spans
		"keys rewrap --key k --store pg:a.b.c.d --dry-run",
		"keys coverage --key k",
		"keys status --key k",
		"apps register ID --kind provisioning",
	}
	var got []string
	for _, l := range docCommandLines(md) {
		got = append(got, strings.Join(l.args, " "))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("docCommandLines found %q, want %q", got, want)
	}
}

// commandTree is the real root command with the help flag every command gets at run time.
func commandTree() *cobra.Command {
	root := cli.NewRootCommand(config.Env{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	root.InitDefaultHelpCmd()
	return root
}

// checkCommandLine walks args (what follows "securemsgctl") down the tree as cobra would: a
// word selects a subcommand while the current command has any, a flag must be defined for the
// command reached so far, and a flag's value is skipped.
func checkCommandLine(root *cobra.Command, args []string) error {
	c := root
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(a[2:], "=")
			f := lookupFlag(c, name)
			if f == nil {
				return fmt.Errorf("%q has no flag --%s", c.CommandPath(), name)
			}
			if !hasValue && takesValue(f) {
				i++
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for j, r := range a[1:] {
				f := lookupShorthand(c, string(r))
				if f == nil {
					return fmt.Errorf("%q has no flag -%c", c.CommandPath(), r)
				}
				if takesValue(f) {
					if j == len(a)-2 { // the value is the next word
						i++
					}
					break // the rest of the word is the value
				}
			}
		case c.HasSubCommands():
			sub := findSub(c, a)
			if sub == nil {
				if placeholder.MatchString(a) {
					return nil // "securemsgctl pools …": any of its commands
				}
				return fmt.Errorf("%q has no command %q", c.CommandPath(), a)
			}
			c = sub
		default:
			// A positional argument of a leaf command: a placeholder or a value.
		}
	}
	return nil
}

// placeholder is a word standing for a command still to choose.
var placeholder = regexp.MustCompile(`^(…|\.\.\.|<[^>]+>|[A-Z][A-Z0-9_]*)$`)

func findSub(c *cobra.Command, name string) *cobra.Command {
	for _, sub := range c.Commands() {
		if sub.Name() == name || sub.HasAlias(name) {
			return sub
		}
	}
	return nil
}

// lookupFlag finds a flag c accepts: its own, its persistent ones, or one inherited from a
// parent.
func lookupFlag(c *cobra.Command, name string) *pflag.Flag {
	if f := c.Flags().Lookup(name); f != nil {
		return f
	}
	if f := c.PersistentFlags().Lookup(name); f != nil {
		return f
	}
	return c.InheritedFlags().Lookup(name)
}

func lookupShorthand(c *cobra.Command, s string) *pflag.Flag {
	if f := c.Flags().ShorthandLookup(s); f != nil {
		return f
	}
	if f := c.PersistentFlags().ShorthandLookup(s); f != nil {
		return f
	}
	return c.InheritedFlags().ShorthandLookup(s)
}

// takesValue reports whether f consumes the next word when given without "=".
func takesValue(f *pflag.Flag) bool { return f.NoOptDefVal == "" }

// docLine is one securemsgctl command line found in the guide: its line number and the words
// after "securemsgctl".
type docLine struct {
	line int
	args []string
}

// inlineCode is an inline code span; it may wrap onto the next line but never spans a blank
// line (a paragraph break).
var inlineCode = regexp.MustCompile("`([^`]+)`")

// docCommandLines finds the securemsgctl command lines of a Markdown document: in fenced code
// blocks (joining lines continued with a backslash) and in inline code spans of the prose.
func docCommandLines(md string) []docLine {
	var out []docLine
	lines := strings.Split(md, "\n")
	var prose strings.Builder // the prose, fences blanked, so line numbers still count
	fenced := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			prose.WriteString("\n")
			continue
		}
		if !fenced {
			prose.WriteString(l + "\n")
			continue
		}
		start := i
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			prose.WriteString("\n")
			i++
			l = strings.TrimSuffix(l, `\`) + " " + lines[i]
		}
		prose.WriteString("\n")
		for _, args := range commandsIn(l) {
			out = append(out, docLine{line: start + 1, args: args})
		}
	}
	text := prose.String()
	for _, m := range inlineCode.FindAllStringSubmatchIndex(text, -1) {
		span := text[m[2]:m[3]]
		if strings.Contains(span, "\n\n") {
			continue
		}
		line := strings.Count(text[:m[0]], "\n") + 1
		for _, args := range commandsIn(strings.ReplaceAll(span, "\n", " ")) {
			out = append(out, docLine{line: line, args: args})
		}
	}
	return out
}

// commandsIn returns the arguments of each securemsgctl invocation in one shell line: the words
// after the program name up to a comment, pipe, redirection, command separator or the end of a
// command substitution.
func commandsIn(line string) [][]string {
	words := shellWords(line)
	var out [][]string
	for i, w := range words {
		if !isProgram(w) {
			continue
		}
		var args []string
		for _, a := range words[i+1:] {
			if endsCommand(a) {
				break
			}
			args = append(args, a)
		}
		out = append(out, args)
	}
	return out
}

// isProgram reports whether a word runs securemsgctl: the bare name or a path to the binary or
// its main package (not an image name such as securemsg/securemsgctl, nor a build argument).
func isProgram(w string) bool {
	if w == "securemsgctl" {
		return true
	}
	return !strings.Contains(w, "=") && strings.HasSuffix(w, "/securemsgctl") && (strings.HasPrefix(w, ".") || strings.HasPrefix(w, "/"))
}

func endsCommand(w string) bool {
	switch w {
	case "|", "||", "&&", ";", "&", ")", ">", ">>", "<", "2>", "2>&1":
		return true
	}
	return strings.HasPrefix(w, "#") || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>")
}

// shellWords splits a line into words as a shell would for these purposes: whitespace
// separates, quotes group (and are removed), and a trailing ';' or ')' is a word of its own.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			w := cur.String()
			for _, sep := range []string{";", ")"} {
				if len(w) > 1 && strings.HasSuffix(w, sep) {
					words = append(words, strings.TrimSuffix(w, sep))
					w = sep
				}
			}
			words = append(words, w)
		}
		cur.Reset()
		inWord = false
	}
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			flush()
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	flush()
	return words
}
