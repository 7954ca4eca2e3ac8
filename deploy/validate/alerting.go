package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// promQL is the parser Prometheus itself uses, with its default options (no experimental
// functions), so an expression that passes here loads in a stock Prometheus.
var promQL = parser.NewParser(parser.Options{})

// Severities are the values an alert's severity label may take (docs/operations.md).
var Severities = []string{"page", "ticket"}

// ParseRules parses a Prometheus rules file with Prometheus's own loader (rulefmt, the code
// `promtool check rules` runs): unknown fields, bad durations, expressions that do not parse
// and annotation templates that do not parse are all errors.
func ParseRules(content []byte) (*rulefmt.RuleGroups, []error) {
	return rulefmt.Parse(content, false, model.LegacyValidation, promQL, slog.New(slog.DiscardHandler))
}

// CheckAlerts checks the repository's conventions on top of what rulefmt checks: every rule
// is an alert with a for: duration, a severity from Severities, a summary, a description and a
// runbook_url to a heading of docs/operations.md (anchors is the set from MarkdownAnchors).
func CheckAlerts(groups *rulefmt.RuleGroups, anchors map[string]bool) []error {
	var errs []error
	seen := map[string]bool{}
	if len(groups.Groups) == 0 {
		errs = append(errs, errNoAlerts)
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				errs = append(errs, fmt.Errorf("group %s: rule %q is not an alert (recording rules belong elsewhere)", g.Name, r.Record))
				continue
			}
			id := fmt.Sprintf("alert %s", r.Alert)
			if seen[r.Alert] {
				errs = append(errs, fmt.Errorf("%s: defined twice", id))
			}
			seen[r.Alert] = true
			if r.For <= 0 {
				errs = append(errs, fmt.Errorf("%s: no for: duration (one bad scrape would fire it)", id))
			}
			if !slices.Contains(Severities, r.Labels["severity"]) {
				errs = append(errs, fmt.Errorf("%s: severity %q, want one of %v", id, r.Labels["severity"], Severities))
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					errs = append(errs, fmt.Errorf("%s: no %s annotation", id, a))
				}
			}
			if u := r.Annotations["runbook_url"]; u != "" {
				if err := checkRunbookURL(u, anchors); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", id, err))
				}
			}
		}
	}
	return errs
}

// checkRunbookURL requires u to point at docs/operations.md with an anchor that exists there.
func checkRunbookURL(u string, anchors map[string]bool) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("runbook_url %q: %w", u, err)
	}
	if !strings.HasSuffix(p.Path, "/docs/operations.md") {
		return fmt.Errorf("runbook_url %q does not point at docs/operations.md", u)
	}
	if p.Fragment == "" {
		return fmt.Errorf("runbook_url %q has no #anchor", u)
	}
	if !anchors[p.Fragment] {
		return fmt.Errorf("runbook_url %q: docs/operations.md has no heading with anchor #%s", u, p.Fragment)
	}
	return nil
}

// MarkdownAnchors returns the anchors GitHub gives the headings of a Markdown document: the
// heading's text lower-cased, punctuation other than '-' and '_' dropped, spaces turned into
// '-', and "-1", "-2", ... added to repeats. Headings inside fenced code blocks are skipped.
func MarkdownAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	counts := map[string]int{}
	fenced := false
	for line := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		m := heading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		text := strings.TrimSpace(m[1])
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := counts[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		counts[slug]++
	}
	return anchors
}

// heading is an ATX heading line: one to six '#', a space, the text.
var heading = regexp.MustCompile(`^#{1,6}\s+(.+?)\s*#*\s*$`)

// Dashboard is the part of a Grafana dashboard JSON model the checks read.
type Dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []Panel `json:"panels"`
}

// Panel is a Grafana panel; rows hold their collapsed panels in Panels.
type Panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []Panel `json:"panels"`
}

// ParseDashboard decodes a Grafana dashboard JSON model.
func ParseDashboard(b []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return &d, nil
}

// grafanaVariables are the dashboard variables an expression may use, with a value of the
// kind Grafana substitutes, so the expression can be parsed as Prometheus will receive it.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "6h",
	"$job", "messaging|attachment|notification|audit",
)

// DashboardExpr is one query of a dashboard panel, with Grafana's variables substituted.
type DashboardExpr struct {
	Panel, RefID, Expr string
}

// DashboardExprs lists every query of every panel (rows included); a graph panel without a
// query is an error, since it would show nothing.
func DashboardExprs(d *Dashboard) ([]DashboardExpr, []error) {
	var out []DashboardExpr
	var errs []error
	var walk func(ps []Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				errs = append(errs, fmt.Errorf("panel %q has no query", p.Title))
			}
			for _, t := range p.Targets {
				out = append(out, DashboardExpr{Panel: p.Title, RefID: t.RefID, Expr: grafanaVariables.Replace(t.Expr)})
			}
		}
	}
	walk(d.Panels)
	return out, errs
}

// MetricNames parses a PromQL expression and returns the metric names its selectors read.
func MetricNames(expr string) ([]string, error) {
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && name == "" {
					name = m.Value
				}
			}
			if name != "" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		return nil
	})
	return names, nil
}

// prometheusSeries are names Prometheus makes itself, not the services.
var prometheusSeries = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// Exposition is one scraped /metrics page, decoded.
type Exposition map[string]*dto.MetricFamily

// ParseExposition decodes the Prometheus text format.
func ParseExposition(r io.Reader) (Exposition, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	return Exposition(mfs), nil
}

// SeriesNames returns every name a query can select from the exposition: a counter's or
// gauge's own name, and a histogram's or summary's _bucket, _sum and _count series.
func (e Exposition) SeriesNames() map[string]bool {
	out := map[string]bool{}
	for name, mf := range e {
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

// CheckMetricsDefined returns an error for each metric an expression reads that no service
// exposes (defined is the union of the services' SeriesNames). where names the expression.
func CheckMetricsDefined(where, expr string, defined map[string]bool) []error {
	names, err := MetricNames(expr)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", where, err)}
	}
	var errs []error
	for _, n := range names {
		if !defined[n] && !prometheusSeries[n] {
			errs = append(errs, fmt.Errorf("%s reads %s, which no service exposes", where, n))
		}
	}
	return errs
}

// idLike are label values that carry an identifier or a person's data: UUIDs, ULIDs, e-mail
// addresses, long hex strings (hashes, tokens) and long digit runs (phone numbers, MRNs).
var idLike = []struct {
	what string
	re   *regexp.Regexp
}{
	{"a UUID", regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)},
	{"a ULID", regexp.MustCompile(`\b[0-9A-HJKMNP-TV-Z]{26}\b`)},
	{"an e-mail address", regexp.MustCompile(`[^@\s]+@[^@\s]+\.[A-Za-z]{2,}`)},
	{"a long hex string", regexp.MustCompile(`(?i)\b[0-9a-f]{16,}\b`)},
	{"a long number", regexp.MustCompile(`\d{7,}`)},
}

// maxLabelValues bounds how many values one label of one metric family may take on one
// endpoint. The largest legitimate set is grpc_method (every rpc of a service).
const maxLabelValues = 200

// CheckLabelsBounded returns an error for every label value that looks like an identifier
// and for every label whose value set is larger than maxLabelValues. Bucket bounds (le) and
// quantiles are numbers by design and are skipped.
func CheckLabelsBounded(where string, e Exposition) []error {
	var errs []error
	for name, mf := range e {
		values := map[string]map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				ln, lv := l.GetName(), l.GetValue()
				if ln == "le" || ln == "quantile" {
					continue
				}
				if values[ln] == nil {
					values[ln] = map[string]bool{}
				}
				values[ln][lv] = true
				for _, p := range idLike {
					if p.re.MatchString(lv) {
						errs = append(errs, fmt.Errorf("%s: %s{%s=%q}: the value looks like %s; labels must come from bounded sets", where, name, ln, lv, p.what))
					}
				}
			}
		}
		for ln, vs := range values {
			if len(vs) > maxLabelValues {
				errs = append(errs, fmt.Errorf("%s: %s label %s has %d values (more than %d): unbounded", where, name, ln, len(vs), maxLabelValues))
			}
		}
	}
	return errs
}

// errNoAlerts reports a rules file with no alert at all.
var errNoAlerts = errors.New("the rules file defines no alert")
