package keys_test

import (
	"strings"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/tracing/tracingtest"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestTransitCallsAreSpans: inside a sampled trace each Transit call is a client span named by
// its operation, under the caller's span, holding neither the key name nor any data; outside a
// trace (start-up, the rewrap job) there are none.
func TestTransitCallsAreSpans(t *testing.T) {
	tp, mem := tracingtest.Record(t)

	srv := testkit.StartTransit(t)
	key := "k-" + testkit.UniqueName(t, "", 40)
	tr, err := keys.OpenTransit(t.Context(), keys.Config{Addr: srv.Addr(), Token: srv.Token()}, key)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mem.GetSpans()); n != 0 {
		t.Fatalf("%d spans for Transit calls outside any trace; want none", n)
	}

	ctx, rpc := tp.Tracer("test").Start(t.Context(), "rpc")
	plain, wrapped, err := tr.GenerateDataKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Decrypt(ctx, key, wrapped); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Decrypt(ctx, key, "vault:v1:not-a-ciphertext"); err == nil {
		t.Fatal("Decrypt(garbage) succeeded")
	}
	rpc.End()

	var names []string
	for _, s := range mem.GetSpans() {
		if s.Name == "rpc" {
			continue
		}
		names = append(names, s.Name)
		if s.Parent.SpanID() != rpc.SpanContext().SpanID() {
			t.Errorf("span %s is not under the caller's span", s.Name)
		}
		for _, kv := range s.Attributes {
			if v := kv.Value.String(); strings.Contains(v, key) || strings.Contains(v, wrapped) || strings.Contains(v, string(plain)) {
				t.Errorf("span %s attribute %s holds the key name or key material", s.Name, kv.Key)
			}
		}
	}
	if got := strings.Join(names, ","); got != "transit datakey/plaintext,transit decrypt,transit decrypt" {
		t.Errorf("spans = %s; want transit datakey, then two decrypts", got)
	}
	if last := mem.GetSpans()[2]; last.Status.Code.String() != "Error" {
		t.Errorf("failed decrypt's span status = %v, want Error", last.Status)
	}
}
