package validate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite generated files (the PrometheusRule copy of the rules file)")

var (
	rulesFile          = filepath.Join("..", "prometheus", "securemsg.rules.yml")
	dashboardFile      = filepath.Join("..", "grafana", "securemsg-oncall.json")
	operationsDoc      = filepath.Join("..", "..", "docs", "operations.md")
	prometheusRuleFile = filepath.Join("..", "k8s", "components", "prometheusrule", "prometheusrule.yaml")
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edit applies "old => new" replacements to s, failing when old is absent, so each negative
// case differs from the real file in exactly one way.
func edit(t *testing.T, s string, edits ...string) string {
	t.Helper()
	for _, e := range edits {
		old, repl, _ := strings.Cut(e, " => ")
		if !strings.Contains(s, old) {
			t.Fatalf("no %q to edit", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	return s
}

// checkRulesText is every static check of a rules file: rulefmt (parse, PromQL, templates)
// and the repository's conventions.
func checkRulesText(rules, doc string) []error {
	groups, errs := ParseRules([]byte(rules))
	if len(errs) > 0 {
		return errs
	}
	return CheckAlerts(groups, MarkdownAnchors(doc))
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	rules, doc := readFile(t, rulesFile), readFile(t, operationsDoc)
	reportAll(t, checkRulesText(rules, doc))

	for _, tc := range []struct {
		name, edit, wantErr string
	}{
		{"expression does not parse", "expr: max by (job, schema) (securemsg_outbox_oldest_unsent_age_seconds) > 300 => expr: max by (job, schema) (securemsg_outbox_oldest_unsent_age_seconds > 300", "could not parse expression"},
		{"unknown function", "expr: max by (job) (securemsg_attachment_clamd_up) == 0 => expr: maxx by (job) (securemsg_attachment_clamd_up) == 0", "could not parse expression"},
		{"no for", "        for: 5m\n        labels:\n          severity: page\n        annotations:\n          summary: \"clamd => " +
			"        labels:\n          severity: page\n        annotations:\n          summary: \"clamd", "no for: duration"},
		{"bad severity", "severity: ticket => severity: low", `severity "low"`},
		{"no summary", `summary: "{{ $labels.job }} recovered => notes: "{{ $labels.job }} recovered`, "no summary annotation"},
		{"template does not parse", `summary: "{{ $labels.job }} recovered => summary: "{{ $labels.job recovered`, "template"},
		{"runbook anchor missing", "operations.md#securemsgclamddown => operations.md#securemsg-clamd-is-down", "no heading with anchor #securemsg-clamd-is-down"},
		{"runbook elsewhere", "blob/main/docs/operations.md#securemsgscanbacklog => blob/main/README.md#securemsgscanbacklog", "does not point at docs/operations.md"},
		{"unknown field", "        for: 10m\n        labels:\n          severity: page\n        annotations:\n          summary: \"Audit => " +
			"        for: 10m\n        severity: page\n        annotations:\n          summary: \"Audit", "field severity not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := checkRulesText(edit(t, rules, tc.edit), doc)
			if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("checks of the edited rules = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// onCallQuestions are the metrics each on-call question needs on the dashboard (the issue
// "Metrics that answer the on-call questions"); each must be read by some panel.
var onCallQuestions = map[string][]string{
	"rpc rate, errors, latency per method":   {"grpc_server_handled_total", "grpc_server_handling_seconds_bucket"},
	"outbox backlog and oldest unpublished":  {"securemsg_outbox_backlog", "securemsg_outbox_oldest_unsent_age_seconds"},
	"consumer lag per durable":               {"securemsg_nats_consumer_num_pending"},
	"DEK cache hit rate and Transit latency": {"securemsg_dek_cache_hits_total", "securemsg_transit_request_duration_seconds_bucket"},
	"scan backlog and clamd availability":    {"securemsg_attachment_scans_pending", "securemsg_attachment_clamd_up"},
	"delivery retries and dead letters":      {"securemsg_notification_delivery_attempts_total"},
	"audit append lag and checkpoint age":    {"securemsg_audit_append_lag_seconds_bucket", "securemsg_audit_last_checkpoint_timestamp_seconds"},
}

// checkDashboardText parses a dashboard and every query in it, and returns the metrics read.
func checkDashboardText(b string) (map[string]bool, []error) {
	d, err := ParseDashboard([]byte(b))
	if err != nil {
		return nil, []error{err}
	}
	exprs, errs := DashboardExprs(d)
	read := map[string]bool{}
	for _, e := range exprs {
		names, err := MetricNames(e.Expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("panel %q query %s: %w", e.Panel, e.RefID, err))
		}
		for _, n := range names {
			read[n] = true
		}
	}
	return read, errs
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	src := readFile(t, dashboardFile)
	read, errs := checkDashboardText(src)
	reportAll(t, errs)
	for q, metrics := range onCallQuestions {
		for _, m := range metrics {
			if !read[m] {
				t.Errorf("no dashboard panel reads %s (on-call question %q)", m, q)
			}
		}
	}

	for _, tc := range []struct {
		name, edit, wantErr string
	}{
		{"query does not parse", "max(securemsg_attachment_scans_pending) => max(securemsg_attachment_scans_pending", "unclosed left parenthesis"},
		{"not JSON", `"panels": [ => "panels": [[`, "dashboard:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, errs := checkDashboardText(edit(t, src, tc.edit))
			if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("checks of the edited dashboard = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// metricsEndpoints are the services' /metrics addresses: SECUREMSG_TEST_<SERVICE>_METRICS_ADDR,
// else the dev stack's fixed ports (scripts/stack.sh: 9101–9104).
func metricsEndpoints() map[string]string {
	out := map[string]string{}
	for i, svc := range services {
		addr := os.Getenv("SECUREMSG_TEST_" + strings.ToUpper(svc.name) + "_METRICS_ADDR")
		if addr == "" {
			addr = fmt.Sprintf("127.0.0.1:%d", 9101+i)
		}
		out[svc.name] = addr
	}
	return out
}

func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// scrapeStack scrapes every service's /metrics. When no service answers it skips the test,
// or fails it under CI=true, where the stack must be up (scripts/test.sh starts it). A stack
// where only some services answer fails everywhere: that is a broken stack, not a missing one.
func scrapeStack(t *testing.T) map[string]Exposition {
	t.Helper()
	out := map[string]Exposition{}
	var down []string
	for svc, addr := range metricsEndpoints() {
		e, err := scrape(t.Context(), addr)
		if err != nil {
			down = append(down, fmt.Sprintf("%s (%s): %v", svc, addr, err))
			continue
		}
		out[svc] = e
	}
	switch {
	case len(out) == 0 && inCI():
		t.Fatalf("no service's /metrics answers (CI=true, so this fails instead of skipping): %s", strings.Join(down, "; "))
	case len(out) == 0:
		t.Skipf("the dev stack's services are not running (scripts/stack.sh up): %s", strings.Join(down, "; "))
	case len(down) > 0:
		t.Fatalf("some services' /metrics do not answer: %s", strings.Join(down, "; "))
	}
	return out
}

func scrape(ctx context.Context, addr string) (Exposition, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4") // the text format, which ParseExposition reads
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return ParseExposition(resp.Body)
}

// referencedExprs are the rules' and the dashboard's expressions, each named for messages.
func referencedExprs(t *testing.T) map[string]string {
	t.Helper()
	groups, errs := ParseRules([]byte(readFile(t, rulesFile)))
	if len(errs) > 0 {
		t.Fatalf("rules: %v", errors.Join(errs...))
	}
	out := map[string]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	d, err := ParseDashboard([]byte(readFile(t, dashboardFile)))
	if err != nil {
		t.Fatal(err)
	}
	exprs, _ := DashboardExprs(d)
	for _, e := range exprs {
		out[fmt.Sprintf("dashboard panel %q query %s", e.Panel, e.RefID)] = e.Expr
	}
	return out
}

// TestReferencedMetricsAreExposed scrapes the running services: every metric an alert or a
// panel reads must be one some service really exposes (a renamed metric would otherwise leave
// an alert that can never fire).
func TestReferencedMetricsAreExposed(t *testing.T) {
	t.Parallel()
	exprs := referencedExprs(t)
	defined := map[string]bool{}
	for _, e := range scrapeStack(t) {
		for n := range e.SeriesNames() {
			defined[n] = true
		}
	}
	for where, expr := range exprs {
		reportAll(t, CheckMetricsDefined(where, expr, defined))
	}
}

// TestCheckMetricsDefinedFails shows the check is not vacuous, on a fixed exposition.
func TestCheckMetricsDefinedFails(t *testing.T) {
	t.Parallel()
	e, err := ParseExposition(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	defined := e.SeriesNames()
	for _, tc := range []struct {
		expr    string
		wantErr string
	}{
		{`rate(securemsg_dek_cache_hits_total[5m])`, ""},
		{`histogram_quantile(0.99, rate(securemsg_audit_append_lag_seconds_bucket[5m]))`, ""},
		{`up == 0`, ""},
		{`rate(securemsg_dek_cache_hitz_total[5m])`, "reads securemsg_dek_cache_hitz_total"},
		{`securemsg_audit_append_lag_seconds > 1`, "reads securemsg_audit_append_lag_seconds,"}, // a histogram has no bare series
	} {
		errs := CheckMetricsDefined("test", tc.expr, defined)
		err := errors.Join(errs...)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckMetricsDefined(%s) = %v, want error containing %q", tc.expr, err, tc.wantErr)
		}
	}
}

// TestMetricLabelsBounded scrapes the running services (which have served the other tests'
// traffic) and fails on any label value that looks like an id, an e-mail address or a number
// that could name a person, and on any label with more values than a bounded set has.
func TestMetricLabelsBounded(t *testing.T) {
	t.Parallel()
	for svc, e := range scrapeStack(t) {
		if len(e) < 10 {
			t.Errorf("%s exposes %d metric families; want the full set", svc, len(e))
		}
		reportAll(t, CheckLabelsBounded(svc, e))
	}
}

func TestCheckLabelsBoundedFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, exposition, wantErr string
	}{
		{"bounded", exposition, ""},
		{"uuid", "m_total{thread=\"0b9f0c1e-6a34-4c1b-9a51-2f0c7d9e1a22\"} 1\n", "looks like a UUID"},
		{"email", "m_total{to=\"pat@example.org\"} 1\n", "looks like an e-mail address"},
		{"ulid", "m_total{id=\"01HZX3J7Q8M9K2N4P6R8T0V2W4\"} 1\n", "looks like a ULID"},
		{"phone", "m_total{to=\"447700900123\"} 1\n", "looks like a long number"},
		{"unbounded", func() string {
			var b strings.Builder
			for i := range maxLabelValues + 1 {
				fmt.Fprintf(&b, "m_total{path=\"/v1/x%d\"} 1\n", i)
			}
			return b.String()
		}(), "unbounded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := ParseExposition(strings.NewReader(tc.exposition))
			if err != nil {
				t.Fatal(err)
			}
			err = errors.Join(CheckLabelsBounded("test", e)...)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("CheckLabelsBounded() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// exposition is a small /metrics page in the shapes the services use.
const exposition = `# TYPE securemsg_dek_cache_hits_total counter
securemsg_dek_cache_hits_total 12
# TYPE securemsg_audit_append_lag_seconds histogram
securemsg_audit_append_lag_seconds_bucket{le="0.5"} 3
securemsg_audit_append_lag_seconds_bucket{le="+Inf"} 4
securemsg_audit_append_lag_seconds_sum 1.5
securemsg_audit_append_lag_seconds_count 4
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="SendMessage",grpc_service="securemsg.messaging.v1.MessagingService",grpc_type="unary"} 7
# TYPE securemsg_nats_consumer_num_pending gauge
securemsg_nats_consumer_num_pending{durable="audit-log",stream="SECUREMSG_AUDIT"} 0
# TYPE go_info gauge
go_info{version="go1.26.8"} 1
`

// prometheusRuleHeader starts the generated PrometheusRule; spec is the rules file's body.
const prometheusRuleHeader = `# Generated from deploy/prometheus/securemsg.rules.yml by
# go test ./deploy/validate -run TestPrometheusRuleMatchesRulesFile -update; do not edit.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: securemsg
  labels:
    release: prometheus
spec:
`

// generatePrometheusRule is the PrometheusRule manifest for a rules file: its header, then the
// rules file without its leading comment, indented under spec.
func generatePrometheusRule(rules string) string {
	var b strings.Builder
	b.WriteString(prometheusRuleHeader)
	body := rules[strings.Index(rules, "groups:"):]
	for line := range strings.SplitSeq(strings.TrimRight(body, "\n"), "\n") {
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

// TestPrometheusRuleMatchesRulesFile keeps the Operator's copy of the rules equal to the
// rules file, compared as data, and checks the prod overlay renders it.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	t.Parallel()
	rules := readFile(t, rulesFile)
	if *update {
		if err := os.WriteFile(prometheusRuleFile, []byte(generatePrometheusRule(rules)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want struct {
		Groups any `json:"groups"`
	}
	if err := yaml.Unmarshal([]byte(rules), &want); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Spec struct {
			Groups any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, prometheusRuleFile)), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec.Groups, want.Groups) {
		t.Errorf("%s differs from %s; regenerate it with -update", prometheusRuleFile, rulesFile)
	}

	o := buildOverlay(t, "prod")
	if len(o.PrometheusRules) != 1 {
		t.Fatalf("prod renders %d PrometheusRules, want 1", len(o.PrometheusRules))
	}
	if l := o.PrometheusRules[0].Labels["release"]; l != "prometheus" {
		t.Errorf("PrometheusRule label release = %q, want prometheus (the ServiceMonitor's, which the Operator selects on)", l)
	}
}
