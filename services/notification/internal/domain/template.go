package domain

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// AllowedFields are the only names a template may reference. None of them can hold PHI: the
// organisation's name and portal link come from configuration, the count is a number.
var AllowedFields = []string{"OrganisationName", "PortalLink", "Count"}

// allowedFuncs are the text/template builtins a template may call: comparisons and logic for
// "{{if gt .Count 1}}", and print formatting. None reaches data beyond its arguments.
var allowedFuncs = []string{"eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "print", "printf"}

// Length limits of templates (proto Template.body_template).
const (
	MaxBodyLen    = 2000
	MaxSMSBodyLen = 320
	MaxSubjectLen = 200
)

// templateRejected is the refusal of a template that fails the lint (reason TEMPLATE_REJECTED);
// the message names offending fields, functions and rules only.
func templateRejected(problems string) error {
	return usererr.New(usererr.InvalidArgument, ReasonTemplateRejected, "template rejected: "+problems)
}

// TemplateData is everything a template can see. It is the allow-list made into a type: even a
// template that slipped past the lint could render nothing else.
type TemplateData struct {
	OrganisationName string
	PortalLink       string
	Count            int
}

// Template is the text of one kind of alert for one channel and locale.
type Template struct {
	Kind       Kind
	Channel    Channel
	Locale     string
	Subject    string
	Body       string
	Version    int64
	UpdateTime time.Time
	UpdatedBy  string
	// Default marks a shipped template not overridden in the database.
	Default bool
}

// Key identifies the template ("new_message.email.en-US").
func (t Template) Key() string { return t.Kind.String() + "." + t.Channel.String() + "." + t.Locale }

// DefaultLocale is used when a person's locale has no template.
const DefaultLocale = "en-US"

// LintTemplate parses both texts and refuses any reference outside the allow-list, any
// variable, dot, nested template or definition, and over-long text. It returns every problem
// at once, as one TEMPLATE_REJECTED refusal.
func LintTemplate(t Template) error {
	var problems []string
	if t.Kind == KindUnspecified || t.Channel == ChannelUnspecified || t.Locale == "" {
		problems = append(problems, "kind, channel and locale are required")
	} else if !slices.Contains(Kinds, t.Kind) || !slices.Contains(Channels, t.Channel) {
		problems = append(problems, "kind or channel is not one alerts are sent for")
	} else if !localePattern.MatchString(t.Locale) {
		problems = append(problems, "locale is not a BCP 47 tag")
	}
	if t.Channel == ChannelWebhook {
		problems = append(problems, "webhook alerts carry ids only and have no template")
	}
	if strings.TrimSpace(t.Body) == "" {
		problems = append(problems, "body_template is empty")
	}
	limit := MaxBodyLen
	if t.Channel == ChannelSMS {
		limit = MaxSMSBodyLen
	}
	if len(t.Body) > limit {
		problems = append(problems, fmt.Sprintf("body_template is longer than %d characters", limit))
	}
	if t.Channel == ChannelSMS && t.Subject != "" {
		problems = append(problems, "subject_template is for email and push only")
	}
	if t.Channel == ChannelEmail && strings.TrimSpace(t.Subject) == "" {
		problems = append(problems, "subject_template is required for email")
	}
	if len(t.Subject) > MaxSubjectLen || strings.ContainsAny(t.Subject, "\r\n") {
		problems = append(problems, "subject_template is too long or spans lines")
	}
	for _, part := range []struct{ name, text string }{{"subject_template", t.Subject}, {"body_template", t.Body}} {
		if part.text == "" {
			continue
		}
		for _, p := range lintText(part.text) {
			problems = append(problems, part.name+": "+p)
		}
	}
	if len(problems) > 0 {
		return templateRejected(strings.Join(problems, "; "))
	}
	return nil
}

// lintText returns the problems of one template text.
func lintText(text string) []string {
	tmpl, err := newTemplate().Parse(text)
	if err != nil {
		// Parse errors quote the template's own text (admin-authored, not PHI) with a position.
		return []string{"does not parse: " + err.Error()}
	}
	if len(tmpl.Templates()) > 1 {
		return []string{"defines nested templates (define/block are not allowed)"}
	}
	l := &linter{found: map[string]bool{}}
	if tmpl.Tree != nil && tmpl.Root != nil {
		l.walk(tmpl.Root)
	}
	out := make([]string, 0, len(l.found))
	for p := range l.found {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

type linter struct{ found map[string]bool }

func (l *linter) bad(format string, args ...any) { l.found[fmt.Sprintf(format, args...)] = true }

func (l *linter) walk(n parse.Node) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			l.walk(c)
		}
	case *parse.TextNode, *parse.CommentNode, *parse.BoolNode, *parse.NumberNode, *parse.StringNode, *parse.NilNode, *parse.BreakNode, *parse.ContinueNode:
	case *parse.ActionNode:
		l.pipe(n.Pipe)
	case *parse.IfNode:
		l.branch(&n.BranchNode)
	case *parse.WithNode:
		l.branch(&n.BranchNode)
	case *parse.RangeNode:
		l.bad("range is not allowed")
	case *parse.TemplateNode:
		l.bad("template %q is not allowed", n.Name)
	case *parse.PipeNode:
		l.pipe(n)
	case *parse.FieldNode:
		if len(n.Ident) != 1 || !slices.Contains(AllowedFields, n.Ident[0]) {
			l.bad("field %q is not allowed (allowed: %s)", "."+strings.Join(n.Ident, "."), strings.Join(AllowedFields, ", "))
		}
	case *parse.IdentifierNode:
		if !slices.Contains(allowedFuncs, n.Ident) {
			l.bad("function %q is not allowed", n.Ident)
		}
	case *parse.DotNode:
		l.bad("dot {{.}} is not allowed; name a field")
	case *parse.VariableNode:
		l.bad("variable %q is not allowed", strings.Join(n.Ident, "."))
	case *parse.ChainNode:
		l.bad("chained field access is not allowed")
	case *parse.CommandNode:
		for _, a := range n.Args {
			l.walk(a)
		}
	default:
		l.bad("construct %T is not allowed", n)
	}
}

func (l *linter) branch(b *parse.BranchNode) {
	l.pipe(b.Pipe)
	l.walk(b.List)
	if b.ElseList != nil {
		l.walk(b.ElseList)
	}
}

func (l *linter) pipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	if len(p.Decl) > 0 {
		l.bad("variable declarations are not allowed")
	}
	for _, c := range p.Cmds {
		l.walk(c)
	}
}

func newTemplate() *template.Template {
	// missingkey=error and the struct type make a reference outside TemplateData fail at render.
	return template.New("alert").Option("missingkey=error")
}

// MaxRenderedLen bounds the rendered text of one template part; a template that expands beyond
// it fails to render instead of allocating without limit.
const MaxRenderedLen = 64 << 10

var errRenderTooLong = errors.New("rendered text is too long")

// limitedBuffer is a bytes.Buffer that refuses to grow past max.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errRenderTooLong
	}
	return b.Buffer.Write(p)
}

// Rendered is an alert's text.
type Rendered struct {
	Subject string
	Body    string
}

// Render lints t and renders it with data. A template is linted again here, not only when it is
// stored, so a row edited in the database behind the API still cannot reach anything else.
func Render(t Template, data TemplateData) (Rendered, error) {
	if err := LintTemplate(t); err != nil {
		return Rendered{}, err
	}
	var out Rendered
	for _, part := range []struct {
		text string
		dst  *string
	}{{t.Subject, &out.Subject}, {t.Body, &out.Body}} {
		if part.text == "" {
			continue
		}
		tmpl, err := newTemplate().Parse(part.text)
		if err != nil {
			return Rendered{}, templateRejected(err.Error())
		}
		// printf widths ("%0999999d") let a short template expand to megabytes: cap the output.
		buf := &limitedBuffer{max: MaxRenderedLen}
		if err := tmpl.Execute(buf, data); err != nil {
			return Rendered{}, fmt.Errorf("render template %s: %w", t.Key(), err)
		}
		*part.dst = buf.String()
	}
	out.Subject = strings.Join(strings.Fields(out.Subject), " ")
	return out, nil
}
