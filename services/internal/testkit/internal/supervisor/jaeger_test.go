package supervisor

import (
	"slices"
	"strings"
	"testing"
)

// TestTracesAreAskedFor: the dev stack's services export traces to its Jaeger only when
// Config.Traces asks (SECUREMSG_TRACES=1 make up), through the standard OTLP variable; without
// it no OTEL_* variable of the stack's own is set, so tracing stays off.
func TestTracesAreAskedFor(t *testing.T) {
	t.Parallel()
	root := RepoRoot()
	off := DevConfig(root)
	on := DevConfig(root)
	on.Traces = true
	for _, svc := range Services {
		envOn := New(on).ServiceEnv(svc)
		if !slices.Contains(envOn, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318") {
			t.Errorf("ServiceEnv(%s) with traces = %q; want OTEL_EXPORTER_OTLP_ENDPOINT at the dev Jaeger", svc, envOn)
		}
		for _, kv := range New(off).ServiceEnv(svc) {
			if strings.HasPrefix(kv, "OTEL_") {
				t.Errorf("ServiceEnv(%s) without traces sets %s", svc, kv)
			}
		}
	}
	s := New(on)
	if s.Jaeger == nil || !slices.Contains(s.Components(), s.Jaeger) {
		t.Fatal("the dev stack has no Jaeger component; `down` could not stop one an earlier `up` started")
	}
	if got := s.Jaeger.proc.args; len(got) != 1 || !strings.HasSuffix(got[0], JaegerConfig) {
		t.Errorf("jaeger args = %q; want --config=file:<root>/%s", got, JaegerConfig)
	}
	private, err := PrivateConfig(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if New(private).Jaeger != nil {
		t.Error("a private stack has the dev Jaeger; private stacks start their own (StartJaeger)")
	}
}
